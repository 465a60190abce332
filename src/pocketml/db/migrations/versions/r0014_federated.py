"""Federated tasks (issue 16, server side): tasks, rounds, participants, SecAgg mailbox, leases.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

The ORM side lives in ``pocketml.federated._orm`` (same ``Base``); this file is
self-contained so the history never changes with the ORM. Five new tables, nothing
existing is touched.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the federated tables."""
    op.create_table(
        "federated_tasks",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("active_key", sa.String(120), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("head", sa.JSON(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("clip_norm", sa.Double(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("rounds_done", sa.Integer(), nullable=False),
        sa.Column("retries_used", sa.Integer(), nullable=False),
        sa.Column("clients_total", sa.Integer(), nullable=False),
        sa.Column("epsilon", sa.Double(), nullable=True),
        sa.Column("result_version", sa.Integer(), nullable=True),
        sa.Column("rollout_id", sa.String(40), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("log", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("finished_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_federated_tasks_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_federated_tasks"),
        sa.UniqueConstraint("active_key", name="uq_federated_tasks_active_key"),
    )
    op.create_index(
        "ix_federated_tasks_app_id_created_at", "federated_tasks", ["app_id", "created_at"]
    )
    op.create_index("ix_federated_tasks_state", "federated_tasks", ["state"])
    _task_fk = sa.ForeignKeyConstraint
    op.create_table(
        "federated_rounds",
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("opened_at", sa.Double(), nullable=False),
        sa.Column("join_until", sa.Double(), nullable=False),
        sa.Column("deadline", sa.Double(), nullable=False),
        sa.Column("phase_deadline", sa.Double(), nullable=False),
        sa.Column("clip_norm", sa.Double(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("secagg", sa.JSON(), nullable=True),
        sa.Column("selected", sa.Integer(), nullable=False),
        sa.Column("reports", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=True),
        sa.Column("closed_at", sa.Double(), nullable=True),
        _task_fk(
            ["task_id"],
            ["federated_tasks.id"],
            name="fk_federated_rounds_task_id_federated_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "number", name="pk_federated_rounds"),
    )
    op.create_table(
        "federated_participants",
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("client_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("num_samples", sa.Integer(), nullable=False),
        sa.Column("joined_at", sa.Double(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("update_sha256", sa.String(64), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=True),
        sa.Column("advert", sa.JSON(), nullable=True),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("unmask", sa.JSON(), nullable=True),
        _task_fk(
            ["task_id"],
            ["federated_tasks.id"],
            name="fk_federated_participants_task_id_federated_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "round", "device_id", name="pk_federated_participants"),
        sa.UniqueConstraint(
            "task_id",
            "round",
            "client_id",
            name="uq_federated_participants_task_id_round_client_id",
        ),
    )
    op.create_table(
        "federated_shares",
        sa.Column("task_id", sa.String(40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("sender", sa.BigInteger(), nullable=False),
        sa.Column("recipient", sa.BigInteger(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        _task_fk(
            ["task_id"],
            ["federated_tasks.id"],
            name="fk_federated_shares_task_id_federated_tasks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "task_id", "round", "sender", "recipient", name="pk_federated_shares"
        ),
    )
    op.create_table(
        "federated_leases",
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_federated_leases"),
    )


def downgrade() -> None:
    """Drop the federated tables."""
    op.drop_table("federated_leases")
    op.drop_table("federated_shares")
    op.drop_table("federated_participants")
    op.drop_table("federated_rounds")
    op.drop_table("federated_tasks")
