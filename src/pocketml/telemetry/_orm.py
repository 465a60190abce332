"""SQLAlchemy tables of telemetry: batches (idempotency), chunks, feedback, export state.

They share the registry's ``Base`` and Alembic history (revisions ``0002``, ``0004``,
``0007`` and ``0015``). Events are stored as chunks: one row per (batch, model) holding the events
columnar in a compressed Arrow IPC blob (see ``_chunks.py``), so a 1,000-event batch is
two small inserts instead of 1,000 indexed rows. Rows never leave ``telemetry/_store.py``
and ``telemetry/_export.py``.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, UTCDateTime

__all__ = [
    "FeedbackRow",
    "TelemetryBatchRow",
    "TelemetryChunkRow",
    "TelemetryExportRow",
    "TelemetryRollupRow",
]


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


class TelemetryChunkRow(Base):
    """The events of one model of one batch, columnar in an Arrow IPC ``payload``.

    ``sqlite_autoincrement``: ids are never reused, so a decoded chunk cached by id can
    never be stale and the Parquet exporter's watermark only moves forward.
    """

    __tablename__ = "telemetry_chunks"
    __table_args__ = (
        # Aggregates select (app, model) chunks overlapping a time window by max_ts.
        sa.Index("ix_telemetry_chunks_app_id_model_max_ts", "app_id", "model", "max_ts"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    batch_id: Mapped[str] = mapped_column(sa.String(128))
    model: Mapped[str] = mapped_column(sa.String(64))
    device_id: Mapped[str] = mapped_column(sa.String(128))
    platform: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    device_class: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    app_version: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    event_count: Mapped[int] = mapped_column(sa.Integer)
    min_ts: Mapped[float] = mapped_column(sa.Double)
    max_ts: Mapped[float] = mapped_column(sa.Double)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
    # Seconds the server added to the device's timestamps (its clock was off): the
    # device's own ts of an event is ``ts - clock_offset_s`` (unless it was clamped).
    clock_offset_s: Mapped[float] = mapped_column(sa.Double, server_default=sa.text("0"))


class TelemetryExportRow(Base):
    """The Parquet exporter's state: watermark, the range in flight, and its lease."""

    __tablename__ = "telemetry_exports"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    watermark: Mapped[int] = mapped_column(sa.BigInteger)
    pending_until: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[float] = mapped_column(sa.Double)


class FeedbackRow(Base):
    """The latest label or thumbs of one prediction of one device.

    A prediction id is unique per device, so the key is (app, prediction id, device):
    two devices labelling their own ``p-000123`` never share a row. Column order lets
    the index serve lookups by (app, prediction id).
    """

    __tablename__ = "feedback"
    __table_args__ = (sa.UniqueConstraint("app_id", "prediction_id", "device_id"),)

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


class TelemetryRollupRow(Base):
    """The merged aggregates of one closed span (UTC hour or day) of one (app, model).

    ``payload`` is a ``_rollup.Partial`` blob. A row is built on read for a span whose end
    has passed and deleted by intake, in its transaction, when a batch brings events of
    that span (so a late event never meets a stale rollup). Rows are immutable; a rebuilt
    span gets a new id (``sqlite_autoincrement``), so decoded rows are cached by id.
    """

    __tablename__ = "telemetry_rollups"
    __table_args__ = (
        sa.UniqueConstraint("app_id", "model", "span_s", "start"),
        sa.Index("ix_telemetry_rollups_app_id_model_start", "app_id", "model", "start"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    span_s: Mapped[int] = mapped_column(sa.Integer)
    start: Mapped[int] = mapped_column(sa.BigInteger)
    events: Mapped[int] = mapped_column(sa.BigInteger)
    payload: Mapped[bytes] = mapped_column(sa.LargeBinary)
