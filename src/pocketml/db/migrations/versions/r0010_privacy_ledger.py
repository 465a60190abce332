"""The privacy ledger and the monitor policy (issue 13, local differential privacy).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

``privacy_ledger`` holds, per (app, device, UTC day), the epsilons the device's noisy
``profile`` events were charged (see ``pocketml/monitor/_privacy_ledger.py``).
``version_policies.monitor`` holds a version's ``MonitorPolicy`` overrides (window,
max rows, epsilon per day); added as a column, never by rebuilding the table.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration never imports the code it migrates).
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create privacy_ledger; add version_policies.monitor."""
    op.create_table(
        "privacy_ledger",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("charges", sa.JSON(), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_privacy_ledger_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_privacy_ledger"),
        sa.UniqueConstraint("app_id", "device_id", "day", name="uq_privacy_ledger_key"),
    )
    op.add_column("version_policies", sa.Column("monitor", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop version_policies.monitor and privacy_ledger."""
    op.drop_column("version_policies", "monitor")
    op.drop_table("privacy_ledger")
