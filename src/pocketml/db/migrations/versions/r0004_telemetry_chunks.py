"""Telemetry chunks: one row per (batch, model) with the events columnar in a blob.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21

Creates ``telemetry_chunks`` and ``telemetry_exports`` (the Parquet exporter's watermark
and lease), carries every ``telemetry_events`` row over into chunks grouped by (app,
batch, model), then drops ``telemetry_events``. The downgrade recreates the events table
and expands the chunks back into rows, so self-hosted data survives both directions.

The payload is an LZ4-compressed Arrow IPC stream with the columns below; like the rest
of this file it is spelled out here (not imported from ``pocketml.telemetry``) so the
history never changes with the code. Readers decode by column name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_PAYLOAD = (
    ("type", "string"),
    ("ts", "float64"),
    ("version", "int64"),
    ("variant", "string"),
    ("source", "string"),
    ("latency_ms", "float64"),
    ("confidence", "float64"),
    ("label", "string"),
    ("prediction_id", "string"),
    ("memory_mb", "float64"),
    ("stage", "string"),
    ("message", "string"),
    ("bytes", "int64"),
    ("duration_ms", "float64"),
    ("outcome", "string"),
)
_CONTEXT = ("device_id", "platform", "device_class", "app_version")
_EVENT_COLUMNS = ("app_id", "batch_id", "model", *_CONTEXT, *(name for name, _ in _PAYLOAD))
_STEP = 5_000


def _events_table() -> sa.TableClause:
    return sa.table("telemetry_events", *(sa.column(name) for name in ("id", *_EVENT_COLUMNS)))


def _chunks_table() -> sa.TableClause:
    names = (
        "id",
        "app_id",
        "batch_id",
        "model",
        *_CONTEXT,
        "event_count",
        "min_ts",
        "max_ts",
        "received_at",
        "payload",
    )
    return sa.table("telemetry_chunks", *(sa.column(name) for name in names))


def _encode(rows: Sequence[Any]) -> bytes:
    import pyarrow as pa

    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in _PAYLOAD])
    arrays = [pa.array([getattr(row, f.name) for row in rows], f.type) for f in schema]
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, schema, options=options) as writer:
        writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return bytes(sink.getvalue())


def _app_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["app_id"], ["apps.id"], name=f"fk_{table}_app_id_apps", ondelete="CASCADE"
    )


def _received_at(conn: sa.Connection) -> dict[tuple[str, str], datetime]:
    batches = sa.table("telemetry_batches", sa.column("app_id"), sa.column("batch_id"))
    received = sa.column("received_at", _TS)
    query = sa.select(batches.c.app_id, batches.c.batch_id, received).select_from(batches)
    out = {}
    for app_id, batch_id, when in conn.execute(query):
        if isinstance(when, str):  # SQLite without type processing
            when = datetime.fromisoformat(when)
        out[(app_id, batch_id)] = when if when.tzinfo else when.replace(tzinfo=UTC)
    return out


def _event_rows(conn: sa.Connection) -> Iterator[Any]:
    events = _events_table()
    query = sa.select(events).order_by(
        events.c.app_id, events.c.batch_id, events.c.model, events.c.id
    )
    # Stream (a server-side cursor on PostgreSQL); options on the statement, not on the
    # connection, which keeps running the DDL after this.
    yield from conn.execute(query.execution_options(yield_per=_STEP))


def _create_chunk_tables() -> None:
    op.create_table(
        "telemetry_chunks",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("platform", sa.String(16), nullable=True),
        sa.Column("device_class", sa.String(32), nullable=True),
        sa.Column("app_version", sa.String(32), nullable=True),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("min_ts", sa.Double(), nullable=False),
        sa.Column("max_ts", sa.Double(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        _app_fk("telemetry_chunks"),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_chunks"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_telemetry_chunks_app_id_model_max_ts",
        "telemetry_chunks",
        ["app_id", "model", "max_ts"],
    )
    op.create_table(
        "telemetry_exports",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.Column("pending_until", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_telemetry_exports"),
    )


def upgrade() -> None:
    """Create the chunk tables, carry the event rows over, drop ``telemetry_events``."""
    _create_chunk_tables()
    conn = op.get_bind()
    received = _received_at(conn)
    chunks = _chunks_table()
    now = datetime.now(UTC)
    pending: list[dict[str, Any]] = []
    for (app_id, batch_id, model), group in groupby(
        _event_rows(conn), key=lambda r: (r.app_id, r.batch_id, r.model)
    ):
        rows = list(group)
        first = rows[0]
        pending.append(
            {
                "app_id": app_id,
                "batch_id": batch_id,
                "model": model,
                **{name: getattr(first, name) for name in _CONTEXT},
                "event_count": len(rows),
                "min_ts": min(r.ts for r in rows),
                "max_ts": max(r.ts for r in rows),
                "received_at": received.get((app_id, batch_id), now),
                "payload": _encode(rows),
            }
        )
        if len(pending) >= 100:
            conn.execute(sa.insert(chunks), pending)
            pending = []
    if pending:
        conn.execute(sa.insert(chunks), pending)
    op.drop_index("ix_telemetry_events_app_id_model_ts", table_name="telemetry_events")
    op.drop_table("telemetry_events")


def downgrade() -> None:
    """Recreate ``telemetry_events`` from the chunks, then drop the chunk tables."""
    import pyarrow as pa

    op.create_table(
        "telemetry_events",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("variant", sa.String(64), nullable=True),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("confidence", sa.Double(), nullable=True),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("prediction_id", sa.String(128), nullable=True),
        sa.Column("memory_mb", sa.Double(), nullable=True),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("duration_ms", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("platform", sa.String(16), nullable=True),
        sa.Column("device_class", sa.String(32), nullable=True),
        sa.Column("app_version", sa.String(32), nullable=True),
        _app_fk("telemetry_events"),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_events"),
    )
    op.create_index(
        "ix_telemetry_events_app_id_model_ts", "telemetry_events", ["app_id", "model", "ts"]
    )
    conn = op.get_bind()
    chunks = _chunks_table()
    events = _events_table()
    query = sa.select(
        chunks.c.app_id, chunks.c.batch_id, chunks.c.model, *(chunks.c[n] for n in _CONTEXT)
    ).add_columns(chunks.c.payload)
    result = conn.execute(query.order_by(chunks.c.id).execution_options(yield_per=100))
    rows: list[dict[str, Any]] = []
    for chunk in result:
        shared = {name: getattr(chunk, name) for name in ("app_id", "batch_id", "model", *_CONTEXT)}
        table = pa.ipc.open_stream(chunk.payload).read_all()
        known = [name for name, _ in _PAYLOAD if name in table.column_names]
        rows.extend({**shared, **event} for event in table.select(known).to_pylist())
        if len(rows) >= _STEP:
            conn.execute(sa.insert(events), rows)
            rows = []
    if rows:
        conn.execute(sa.insert(events), rows)
    op.drop_table("telemetry_exports")
    op.drop_index("ix_telemetry_chunks_app_id_model_max_ts", table_name="telemetry_chunks")
    op.drop_table("telemetry_chunks")
