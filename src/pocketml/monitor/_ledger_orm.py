"""SQLAlchemy table of the privacy ledger: the epsilon each device spent per UTC day.

Alembic revision ``0010``. The rows never leave ``monitor/_privacy_ledger.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, JSONDict, UTCDateTime

__all__ = ["PrivacyLedgerRow"]


class PrivacyLedgerRow(Base):
    """What one device of one app was charged on one UTC day.

    ``charges`` maps an epsilon (its ``repr``) to how many events spent it: devices spend
    the same share every window, so a day is a handful of keys, and the accountant
    composes each key as one self-composed event. ``epsilon`` is the day's composed
    epsilon (for people and reports), ``events`` the number of charged events.
    """

    __tablename__ = "privacy_ledger"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "device_id", "day", name="uq_privacy_ledger_key"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    day: Mapped[int] = mapped_column(sa.Integer)
    charges: Mapped[JSONDict] = mapped_column(sa.JSON)
    epsilon: Mapped[float] = mapped_column(sa.Float)
    events: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
