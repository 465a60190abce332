"""Device keys: an app may hold several, so a rotated key keeps working for an overlap.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Moves ``apps.device_key_sha256`` into ``app_device_keys``: one row per key with its
creation time, the end of its overlap (``expires_at``, NULL while it is the active key)
and its revocation time. Existing keys are copied as the active key of their app, under a
key id made of the first 16 hex characters of their hash (the same rule new keys use), so
no installed app build notices the migration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create ``app_device_keys``, copy each app's key into it, drop the old column."""
    op.create_table(
        "app_device_keys",
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("key_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_app_device_keys_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name="pk_app_device_keys"),
        sa.UniqueConstraint("key_sha256", name="uq_app_device_keys_key_sha256"),
    )
    op.create_index("ix_app_device_keys_app_id", "app_device_keys", ["app_id"])
    op.execute(
        "INSERT INTO app_device_keys (key_id, app_id, key_sha256, created_at) "
        "SELECT 'dk_' || substr(device_key_sha256, 1, 16), id, device_key_sha256, created_at "
        "FROM apps"
    )
    with op.batch_alter_table("apps") as batch:
        batch.drop_constraint("uq_apps_device_key_sha256", type_="unique")
        batch.drop_column("device_key_sha256")


def downgrade() -> None:
    """Put each app's active key (else its newest) back on ``apps``; drop the table."""
    with op.batch_alter_table("apps") as batch:
        batch.add_column(sa.Column("device_key_sha256", sa.String(64), nullable=True))
    op.execute(
        "UPDATE apps SET device_key_sha256 = (SELECT k.key_sha256 FROM app_device_keys k "
        "WHERE k.app_id = apps.id ORDER BY (k.expires_at IS NULL AND k.revoked_at IS NULL) "
        "DESC, k.created_at DESC LIMIT 1)"
    )
    with op.batch_alter_table("apps") as batch:
        batch.alter_column("device_key_sha256", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_apps_device_key_sha256", ["device_key_sha256"])
    op.drop_index("ix_app_device_keys_app_id", table_name="app_device_keys")
    op.drop_table("app_device_keys")
