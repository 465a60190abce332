"""The loop (issue 14 items 3-5): retraining jobs and per-model loop policies.

Revision ID: 0013
Revises: 0011 (the lead re-chains it after the sample store's 0012 at merge)
Create Date: 2026-12-05

The ORM side lives in ``pocketml.loop._orm`` (same ``Base``); this file is self-contained
so the history never changes with the ORM. Two new tables, nothing existing is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the loop job and loop policy tables."""
    op.create_table(
        "loop_jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("active_key", sa.String(120), nullable=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("trigger_details", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("step", sa.String(16), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("log", sa.JSON(), nullable=False),
        sa.Column("champion_version", sa.Integer(), nullable=True),
        sa.Column("candidate_version", sa.Integer(), nullable=True),
        sa.Column("samples", sa.JSON(), nullable=False),
        sa.Column("gate", sa.JSON(), nullable=True),
        sa.Column("rollout_id", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_loop_jobs_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_loop_jobs"),
        sa.UniqueConstraint("active_key", name="uq_loop_jobs_active_key"),
    )
    op.create_index(
        "ix_loop_jobs_app_id_model_created_at", "loop_jobs", ["app_id", "model", "created_at"]
    )
    op.create_index("ix_loop_jobs_state", "loop_jobs", ["state"])
    op.create_table(
        "loop_policies",
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_loop_policies_model_id_models", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_loop_policies_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("model_id", name="pk_loop_policies"),
    )
    op.create_index("ix_loop_policies_app_id", "loop_policies", ["app_id"])


def downgrade() -> None:
    """Drop the loop tables."""
    op.drop_table("loop_policies")
    op.drop_table("loop_jobs")
