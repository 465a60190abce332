"""Initial registry schema: apps, app_keys, models, model_versions, variants.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the five registry tables with their constraints and list indexes."""
    op.create_table(
        "apps",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("admin_token_sha256", sa.String(64), nullable=False),
        sa.Column("device_key_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_apps"),
        sa.UniqueConstraint("name", name="uq_apps_name"),
        sa.UniqueConstraint("admin_token_sha256", name="uq_apps_admin_token_sha256"),
        sa.UniqueConstraint("device_key_sha256", name="uq_apps_device_key_sha256"),
    )
    op.create_table(
        "app_keys",
        sa.Column("key_id", sa.String(80), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("wrapped_secret", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("retired_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_app_keys_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_app_keys"),
    )
    op.create_index("ix_app_keys_app_id_kind", "app_keys", ["app_id", "kind"])
    op.create_table(
        "models",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("schema", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_models_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("app_id", "name", name="uq_models_app_id_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("model_id", sa.String(40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(200), nullable=True),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("source_framework", sa.String(100), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("run_record", sa.JSON(), nullable=False),
        sa.Column("card", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name="fk_model_versions_model_id_models",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    )
    op.create_index(
        "ix_model_versions_model_id_stage_version",
        "model_versions",
        ["model_id", "stage", "version"],
    )
    op.create_index(
        "uq_model_versions_one_production",
        "model_versions",
        ["model_id"],
        unique=True,
        sqlite_where=sa.text("stage = 'production'"),
        postgresql_where=sa.text("stage = 'production'"),
    )
    op.create_table(
        "variants",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("version_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model_key", sa.String(100), nullable=False),
        sa.Column("package_id", sa.String(64), nullable=False),
        sa.Column("package_key", sa.String(100), nullable=False),
        sa.Column("package_size", sa.BigInteger(), nullable=False),
        sa.Column("signing_key_id", sa.String(80), nullable=False),
        sa.Column("content_key_id", sa.String(80), nullable=True),
        sa.Column("compatibility", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("benchmarks", sa.JSON(), nullable=False),
        sa.Column("profiles", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name="fk_variants_version_id_model_versions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_variants_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_variants"),
        sa.UniqueConstraint("version_id", "name", name="uq_variants_version_id_name"),
    )
    op.create_index("ix_variants_app_id_package_id", "variants", ["app_id", "package_id"])


def downgrade() -> None:
    """Drop the registry tables (all data is lost)."""
    op.drop_table("variants")
    op.drop_table("model_versions")
    op.drop_table("models")
    op.drop_table("app_keys")
    op.drop_table("apps")
