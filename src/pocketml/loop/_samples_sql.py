"""The sample store's SQL: its tables, the feedback join, deletion and the audit row.

Other services' tables (telemetry's ``feedback``, ``telemetry_chunks``,
``telemetry_batches``) are reached by name on the shared metadata, never through their
private modules.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

import pocketml.telemetry  # noqa: F401  (registers the telemetry tables on Base.metadata)
from pocketml.db import Base, utcnow
from pocketml.errors import ValidationFailed
from pocketml.loop._samples_orm import SampleAuditRow, SampleRow
from pocketml.protocol import WireSample
from pocketml.schema import ModelSchema

__all__ = [
    "AUDIT",
    "SAMPLES",
    "audit_row",
    "check_sample",
    "delete_device_rows",
    "insert_statement",
    "joined",
    "other_table",
    "when",
]

SAMPLES: sa.Table = SampleRow.__table__  # type: ignore[assignment]
AUDIT: sa.Table = SampleAuditRow.__table__  # type: ignore[assignment]


def other_table(name: str) -> sa.Table:
    """A table another service declared on the shared metadata (by name, no private import)."""
    return Base.metadata.tables[name]


def insert_statement(dialect: str, table: sa.Table) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def joined(app_id: str, model: str, since: float | None, until: float | None) -> sa.Select[Any]:
    """A model's sample rows with ``feedback_label``: the label feedback of the same
    (device, prediction id) (unique per app, so the join adds no rows)."""
    feedback = other_table("feedback")
    query = (
        sa.select(SAMPLES, feedback.c.label.label("feedback_label"))
        .select_from(
            SAMPLES.outerjoin(
                feedback,
                sa.and_(
                    feedback.c.app_id == SAMPLES.c.app_id,
                    feedback.c.device_id == SAMPLES.c.device_id,
                    feedback.c.prediction_id == SAMPLES.c.prediction_id,
                ),
            )
        )
        .where(SAMPLES.c.app_id == app_id, SAMPLES.c.model == model)
        .order_by(SAMPLES.c.id)
    )
    if since is not None:
        query = query.where(SAMPLES.c.received_at >= when(since))
    if until is not None:
        query = query.where(SAMPLES.c.received_at < when(until))
    return query


def check_sample(where: str, sample: WireSample, schema: ModelSchema) -> None:
    expected = schema.input.sample_shape
    if sample.shape not in (expected, (1, *expected)):
        raise ValidationFailed(
            f"{where}.input.shape: model {sample.model!r} v{sample.version} expects "
            f"{list(expected)} (or [1, {', '.join(map(str, expected))}]); got {list(sample.shape)}"
        )
    labels = schema.labels
    for name, value in (("predicted", sample.predicted), ("label", sample.label)):
        if value is not None and value not in labels:
            shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
            raise ValidationFailed(
                f"{where}.{name}: model {sample.model!r} v{sample.version} has no label "
                f"{value!r}; expected one of {shown}"
            )
    if not math.isfinite(sample.confidence):  # parse_sample_batch checked it; keep it so
        raise ValidationFailed(f"{where}.confidence must be finite")


def delete_device_rows(conn: sa.Connection, table: sa.Table, app_id: str, device_id: str) -> int:
    result = conn.execute(
        sa.delete(table).where(table.c.app_id == app_id, table.c.device_id == device_id)
    )
    return int(result.rowcount)


def audit_row(
    conn: sa.Connection,
    app_id: str,
    action: str,
    device_id: str | None,
    actor: str,
    detail: dict[str, Any],
) -> int:
    result = conn.execute(
        sa.insert(AUDIT)
        .values(
            app_id=app_id,
            action=action,
            device_id=device_id,
            actor=actor[:128],
            detail=detail,
            at=utcnow(),
        )
        .returning(AUDIT.c.id)
    )
    return int(result.scalar_one())


def when(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, tz=UTC)
