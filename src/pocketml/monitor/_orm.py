"""SQLAlchemy table of the monitor: merged sketches, one row per version x group x hour.

Alembic revision ``0009``. The rows never leave ``monitor/_store.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, UTCDateTime

__all__ = ["SketchRow"]


class SketchRow(Base):
    """The sum of every sketch devices sent for one (model, version, device class, app
    version) in one window (an hour by default).

    ``counts`` is the flat int64 array of the version's profile layout, little-endian
    (``numpy.ndarray.tobytes``): 100 features x 22 bins is 17.6 KB, and merging is one
    vector add instead of a JSON walk. Noisy (local-DP) sketches may make counts negative;
    ``noise_variance`` is the summed per-bin variance of that noise (0 for exact sketches)
    and ``events`` how many device events were added in.
    """

    __tablename__ = "monitor_sketches"
    __table_args__ = (
        sa.UniqueConstraint(
            "app_id",
            "model",
            "version",
            "device_class",
            "app_version",
            "window_start",
            name="uq_monitor_sketches_key",  # the convention's name is over PostgreSQL's 63
        ),
        # Reports select one model's rows in a time range.
        sa.Index(
            "ix_monitor_sketches_app_id_model_window_start", "app_id", "model", "window_start"
        ),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column(sa.Integer)
    device_class: Mapped[str] = mapped_column(sa.String(32))
    app_version: Mapped[str] = mapped_column(sa.String(32))
    window_start: Mapped[int] = mapped_column(sa.BigInteger)
    n: Mapped[int] = mapped_column(sa.BigInteger)
    counts: Mapped[bytes] = mapped_column(sa.LargeBinary)
    noise_variance: Mapped[float] = mapped_column(sa.Float)
    events: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
