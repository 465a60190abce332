"""SQLAlchemy table of the delivery service: per-version hybrid and download policies.

It shares the registry's ``Base`` (and so its naming convention and Alembic history:
revision ``0002`` creates it). Rows never leave ``delivery/_policy_store.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import Base, JSONDict, UTCDateTime

__all__ = ["VersionPolicyRow"]


class VersionPolicyRow(Base):
    """The stored policy overrides of one model version (defaults fill the rest)."""

    __tablename__ = "version_policies"

    version_id: Mapped[str] = mapped_column(
        sa.ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    hybrid: Mapped[JSONDict] = mapped_column(sa.JSON)
    download: Mapped[JSONDict] = mapped_column(sa.JSON)
    # MonitorPolicy overrides (migration 0010); null for rows written before it.
    monitor: Mapped[JSONDict | None] = mapped_column(sa.JSON, nullable=True)
    # CapturePolicy overrides (migration 0012); null for rows written before it.
    capture: Mapped[JSONDict | None] = mapped_column(sa.JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
