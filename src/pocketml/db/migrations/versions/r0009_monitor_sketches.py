"""Merged device sketches (issue 13): one row per version x device group x hour.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

``monitor_sketches`` holds the sum of every ``profile`` event devices sent for one
(model, version, device class, app version) in one hour: ``n`` rows and the counts of
every block of the version's profile as a little-endian int64 blob. See
``pocketml/monitor/_store.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Frozen copies of the column types (a migration never imports the code it migrates).
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create monitor_sketches."""
    op.create_table(
        "monitor_sketches",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("device_class", sa.String(32), nullable=False),
        sa.Column("app_version", sa.String(32), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.LargeBinary(), nullable=False),
        sa.Column("noise_variance", sa.Float(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_monitor_sketches_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_monitor_sketches"),
        sa.UniqueConstraint(
            "app_id",
            "model",
            "version",
            "device_class",
            "app_version",
            "window_start",
            name="uq_monitor_sketches_key",
        ),
    )
    op.create_index(
        "ix_monitor_sketches_app_id_model_window_start",
        "monitor_sketches",
        ["app_id", "model", "window_start"],
    )


def downgrade() -> None:
    """Drop monitor_sketches."""
    op.drop_index("ix_monitor_sketches_app_id_model_window_start", "monitor_sketches")
    op.drop_table("monitor_sketches")
