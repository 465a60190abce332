"""Telemetry semantics: feedback keyed per device, and the clock offset applied to events.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10

- ``feedback``: the unique key becomes (app, prediction id, device). A prediction id is
  unique per device, not per app: two devices that each label their own ``p-000123`` keep
  two rows, and feedback labels only the inference its own device reported. The columns
  are ordered so the index still serves lookups by (app, prediction id).
- ``telemetry_chunks.clock_offset_s``: seconds the server added to the device's event
  timestamps of the chunk (its clock was off; 0 for chunks stored before this revision),
  so the device's own ts stays recoverable as ``ts - clock_offset_s``.

The downgrade keeps, of feedback rows that would collide on (app, prediction id), the one
with the newest ``ts`` (the rule the old key enforced), and drops the offset column.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_OLD_KEY = ("uq_feedback_app_id_prediction_id", ["app_id", "prediction_id"])
_NEW_KEY = (
    "uq_feedback_app_id_prediction_id_device_id",
    ["app_id", "prediction_id", "device_id"],
)


def _swap_feedback_key(drop: tuple[str, list[str]], create: tuple[str, list[str]]) -> None:
    # batch mode: SQLite cannot alter constraints, so it copies the (small) table.
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint(drop[0], type_="unique")
        batch.create_unique_constraint(create[0], create[1])


def upgrade() -> None:
    """Key feedback per device; add the chunks' clock offset (0 for existing chunks)."""
    _swap_feedback_key(_OLD_KEY, _NEW_KEY)
    # A plain ADD COLUMN on both dialects: batch mode would copy telemetry_chunks on
    # SQLite and lose its AUTOINCREMENT (chunk ids must never be reused).
    op.add_column(
        "telemetry_chunks",
        sa.Column("clock_offset_s", sa.Double(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    """Keep the newest feedback per (app, prediction id); drop the clock offset."""
    feedback = sa.table(
        "feedback",
        sa.column("id"),
        sa.column("app_id"),
        sa.column("prediction_id"),
        sa.column("ts"),
    )
    newer = feedback.alias("newer")
    shadowed = sa.exists().where(
        newer.c.app_id == feedback.c.app_id,
        newer.c.prediction_id == feedback.c.prediction_id,
        sa.or_(
            newer.c.ts > feedback.c.ts,
            sa.and_(newer.c.ts == feedback.c.ts, newer.c.id > feedback.c.id),
        ),
    )
    op.execute(sa.delete(feedback).where(shadowed))
    _swap_feedback_key(_NEW_KEY, _OLD_KEY)
    # SQLite >= 3.35 drops a column in place (no table copy, AUTOINCREMENT kept).
    op.execute("ALTER TABLE telemetry_chunks DROP COLUMN clock_offset_s")
