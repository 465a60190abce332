"""SQLAlchemy tables of the sample store: the sample index and its audit (revision 0012).

A sample's tensor is not a row: it lives in an NPZ chunk in the ArtifactStore (one chunk
per accepted batch, so per device), and its index row points into it (``chunk_key``,
``row``). Rows never leave ``loop/_samples.py``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, UTCDateTime

__all__ = ["SampleAuditRow", "SampleRow"]


class SampleRow(Base):
    """One consented sample: who sent it, what the model said, where its tensor is."""

    __tablename__ = "samples"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "sample_id"),  # idempotent per sample id
        sa.Index("ix_samples_app_id_model_received", "app_id", "model", "received_at"),
        sa.Index("ix_samples_app_id_device_id", "app_id", "device_id"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    model_id: Mapped[str] = mapped_column(sa.String(40))
    model: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.Integer)
    sample_id: Mapped[str] = mapped_column(sa.String(32))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    device_class: Mapped[str] = mapped_column(sa.String(32))
    prediction_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    predicted: Mapped[str] = mapped_column(sa.String(256))
    confidence: Mapped[float] = mapped_column(sa.Double)
    label: Mapped[str | None] = mapped_column(sa.String(256), nullable=True)
    captured_at: Mapped[float] = mapped_column(sa.Double)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    chunk_key: Mapped[str] = mapped_column(sa.String(80))
    row: Mapped[int] = mapped_column(sa.Integer)
    bytes: Mapped[int] = mapped_column(sa.Integer)


class SampleAuditRow(Base):
    """One audited action on samples: a device forgotten (by itself or an admin), a purge."""

    __tablename__ = "sample_audit"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(sa.String(32))
    device_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
