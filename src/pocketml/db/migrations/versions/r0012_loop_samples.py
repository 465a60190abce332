"""Consented samples (issue 14 items 1-2): the sample index, its audit, capture policies.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05

The ORM side lives in ``pocketml.loop._samples_orm`` (same ``Base``); this file is
self-contained so the history never changes with the ORM. Two new tables and one added
column (``version_policies.capture``: a version's ``CapturePolicy`` overrides; added, not
rebuilt, so SQLite never copies the parent table).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _app_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["app_id"], ["apps.id"], name=f"fk_{table}_app_id_apps", ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the sample index and the sample audit; add ``version_policies.capture``."""
    op.create_table(
        "samples",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("device_class", sa.String(32), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=True),
        sa.Column("predicted", sa.String(256), nullable=False),
        sa.Column("confidence", sa.Double(), nullable=False),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("captured_at", sa.Double(), nullable=False),
        sa.Column("received_at", _TS, nullable=False),
        sa.Column("chunk_key", sa.String(80), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("bytes", sa.Integer(), nullable=False),
        _app_fk("samples"),
        sa.PrimaryKeyConstraint("id", name="pk_samples"),
        sa.UniqueConstraint("app_id", "sample_id", name="uq_samples_app_id_sample_id"),
    )
    op.create_index(
        "ix_samples_app_id_model_received", "samples", ["app_id", "model", "received_at"]
    )
    op.create_index("ix_samples_app_id_device_id", "samples", ["app_id", "device_id"])
    op.create_table(
        "sample_audit",
        sa.Column("id", _PK, autoincrement=True, nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        _app_fk("sample_audit"),
        sa.PrimaryKeyConstraint("id", name="pk_sample_audit"),
    )
    op.create_index("ix_sample_audit_app_id", "sample_audit", ["app_id"])
    op.add_column("version_policies", sa.Column("capture", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_column("version_policies", "capture")
    op.drop_index("ix_sample_audit_app_id", table_name="sample_audit")
    op.drop_table("sample_audit")
    op.drop_index("ix_samples_app_id_device_id", table_name="samples")
    op.drop_index("ix_samples_app_id_model_received", table_name="samples")
    op.drop_table("samples")
