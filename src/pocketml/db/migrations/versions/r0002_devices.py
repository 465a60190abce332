"""Device protocol tables: version_policies, telemetry_batches, telemetry_events, feedback.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

The ORM side lives in ``pocketml.delivery._orm`` and ``pocketml.telemetry._orm`` (same
``Base``); this file is self-contained so the history never changes with the ORM.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _app_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["app_id"], ["apps.id"], name=f"fk_{table}_app_id_apps", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the policy, telemetry and feedback tables with their constraints and indexes."""
    op.create_table(
        "version_policies",
        sa.Column("version_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("hybrid", sa.JSON(), nullable=False),
        sa.Column("download", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_version_policies_version_id_model_versions",
            ondelete="CASCADE",
        ),
        _app_fk("version_policies"),
        sa.PrimaryKeyConstraint("version_id", name="pk_version_policies"),
    )
    op.create_index("ix_version_policies_app_id", "version_policies", ["app_id"])
    op.create_table(
        "telemetry_batches",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        _app_fk("telemetry_batches"),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_batches"),
        sa.UniqueConstraint("app_id", "batch_id", name="uq_telemetry_batches_app_id_batch_id"),
    )
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
    op.create_table(
        "feedback",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("label", sa.String(128), nullable=True),
        sa.Column("thumbs", sa.String(8), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        _app_fk("feedback"),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("app_id", "prediction_id", name="uq_feedback_app_id_prediction_id"),
    )


def downgrade() -> None:
    """Drop the device protocol tables."""
    op.drop_table("feedback")
    op.drop_index("ix_telemetry_events_app_id_model_ts", table_name="telemetry_events")
    op.drop_table("telemetry_events")
    op.drop_table("telemetry_batches")
    op.drop_index("ix_version_policies_app_id", table_name="version_policies")
    op.drop_table("version_policies")
