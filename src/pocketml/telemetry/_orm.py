"""SQLAlchemy tables of telemetry: batches (idempotency), events, feedback.

They share the registry's ``Base`` and Alembic history (revision ``0002``). Events are
one wide table (one column per field of any kind, null where it does not apply): bulk
inserts stay one ``executemany`` and aggregates are single-table scans. Rows never leave
``telemetry/_store.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.registry._orm import Base, UTCDateTime

__all__ = ["BIGINT_PK", "FeedbackRow", "TelemetryBatchRow", "TelemetryEventRow"]

# A 64-bit autoincrement key on PostgreSQL; SQLite only autoincrements INTEGER rowids.
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class TelemetryBatchRow(Base):
    """One received batch; the unique (app, batch_id) makes intake idempotent."""

    __tablename__ = "telemetry_batches"
    __table_args__ = (sa.UniqueConstraint("app_id", "batch_id"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(sa.String(128))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    event_count: Mapped[int] = mapped_column(sa.Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TelemetryEventRow(Base):
    """One device event (inference, error or download)."""

    __tablename__ = "telemetry_events"
    __table_args__ = (
        # The one index: aggregates scan (app, model, ts); the feedback join probes the
        # feedback table's unique (app_id, prediction_id). Fewer indexes, faster intake.
        sa.Index("ix_telemetry_events_app_id_model_ts", "app_id", "model", "ts"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(sa.String(128))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    type: Mapped[str] = mapped_column(sa.String(16))
    ts: Mapped[float] = mapped_column(sa.Double)
    model: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    variant: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    source: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    latency_ms: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    confidence: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    label: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    prediction_id: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    memory_mb: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    stage: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    message: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    bytes: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    duration_ms: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    outcome: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    platform: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    device_class: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    app_version: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)


class FeedbackRow(Base):
    """The latest label or thumbs of one prediction (unique per app and prediction id)."""

    __tablename__ = "feedback"
    __table_args__ = (sa.UniqueConstraint("app_id", "prediction_id"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    prediction_id: Mapped[str] = mapped_column(sa.String(128))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    label: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    thumbs: Mapped[str | None] = mapped_column(sa.String(8), nullable=True)
    ts: Mapped[float] = mapped_column(sa.Double)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
