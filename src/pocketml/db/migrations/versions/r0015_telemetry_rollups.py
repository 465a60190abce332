"""Telemetry rollups (issue 15): merged aggregates per closed hour and day of a model.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

``telemetry_rollups`` holds one row per (app, model, span, start): the counters and the
latency sketch of a closed UTC hour (``span_s`` 3600) or day (86400) as a blob (see
``pocketml/telemetry/_rollup.py``). Rows are derived data: built on read, deleted by
intake for the spans a batch touches, so an empty table is always correct (downgrade
simply drops it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration never imports the code it migrates).
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create telemetry_rollups."""
    op.create_table(
        "telemetry_rollups",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("span_s", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_telemetry_rollups_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_rollups"),
        sa.UniqueConstraint(
            "app_id",
            "model",
            "span_s",
            "start",
            name="uq_telemetry_rollups_app_id_model_span_s_start",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_telemetry_rollups_app_id_model_start",
        "telemetry_rollups",
        ["app_id", "model", "start"],
    )


def downgrade() -> None:
    """Drop telemetry_rollups."""
    op.drop_index("ix_telemetry_rollups_app_id_model_start", table_name="telemetry_rollups")
    op.drop_table("telemetry_rollups")
