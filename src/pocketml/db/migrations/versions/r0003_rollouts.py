"""Rollout tables: channel_targeting, rollouts, experiments, rollout_audit, evaluator_leases.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21

The ORM side lives in ``pocketml.delivery._rollout_orm`` (same ``Base``); this file is
self-contained so the history never changes with the ORM.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _app_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["app_id"], ["apps.id"], name=f"fk_{table}_app_id_apps", ondelete="CASCADE"
    )


def _model_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["model_id"], ["models.id"], name=f"fk_{table}_model_id_models", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the targeting, rollout, audit and lease tables."""
    op.create_table(
        "channel_targeting",
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _model_fk("channel_targeting"),
        _app_fk("channel_targeting"),
        sa.PrimaryKeyConstraint("model_id", "channel", name="pk_channel_targeting"),
    )
    op.create_index("ix_channel_targeting_app_id", "channel_targeting", ["app_id"])
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("candidate_version", sa.Integer(), nullable=False),
        sa.Column("control_version", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_key", sa.String(80), nullable=True),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Double(), nullable=False),
        sa.Column("min_dwell_s", sa.Double(), nullable=False),
        sa.Column("min_samples", sa.Integer(), nullable=False),
        sa.Column("on_breach", sa.String(16), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("targeting", sa.JSON(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("step_started_at", _TS, nullable=False),
        sa.Column("last_evaluation", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _app_fk("rollouts"),
        _model_fk("rollouts"),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.UniqueConstraint("active_key", name="uq_rollouts_active_key"),
    )
    op.create_index("ix_rollouts_app_id", "rollouts", ["app_id"])
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active_key", sa.String(80), nullable=True),
        sa.Column("arms", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("winner", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        _app_fk("experiments"),
        _model_fk("experiments"),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("active_key", name="uq_experiments_active_key"),
    )
    op.create_index("ix_experiments_app_id", "experiments", ["app_id"])
    op.create_table(
        "rollout_audit",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        _app_fk("rollout_audit"),
        sa.PrimaryKeyConstraint("id", name="pk_rollout_audit"),
    )
    op.create_index("ix_rollout_audit_app_id", "rollout_audit", ["app_id"])
    op.create_table(
        "evaluator_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_evaluator_leases"),
    )


def downgrade() -> None:
    """Drop the rollout tables."""
    op.drop_table("evaluator_leases")
    op.drop_index("ix_rollout_audit_app_id", table_name="rollout_audit")
    op.drop_table("rollout_audit")
    op.drop_index("ix_experiments_app_id", table_name="experiments")
    op.drop_table("experiments")
    op.drop_index("ix_rollouts_app_id", table_name="rollouts")
    op.drop_table("rollouts")
    op.drop_index("ix_channel_targeting_app_id", table_name="channel_targeting")
    op.drop_table("channel_targeting")
