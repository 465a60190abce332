"""Device keys with an overlap, and packages a CDN may cache.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04

Adds ``app_device_keys``: one row per key with its creation time, the end of its overlap
(``expires_at``, NULL while it is the active key) and its revocation time. Existing keys
are copied as the active key of their app, under a key id made of the first 16 hex
characters of their hash (the same rule new keys use), so no installed app build notices
the migration. Authentication reads only the new table.

``apps.packages_public`` (default true, existing apps included) says whether the app's
packages may be fetched without a device key and cached by shared caches (docs/packages.md,
"Serving packages from a CDN"); ``ix_variants_package_id`` makes that lookup by package id
alone (across apps) an index read.

``apps.device_key_sha256`` stays and keeps the hash of the ACTIVE key (the store updates it
in the rotation's transaction), because dropping it is unsafe on SQLite: a UNIQUE column
cannot be dropped in place, and rebuilding ``apps`` (Alembic's batch mode) deletes every
row of every table that references it, since foreign keys with ON DELETE CASCADE are on
and cannot be switched off inside the migration's transaction. Keeping it current also
makes the downgrade exact: the app keeps its active key, the overlap keys are gone.
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
    """Create ``app_device_keys`` and copy each app's key into it as its active key."""
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
    op.add_column(
        "apps",
        sa.Column("packages_public", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_variants_package_id", "variants", ["package_id"])


def downgrade() -> None:
    """Drop the table; ``apps.device_key_sha256`` already holds each app's active key."""
    op.drop_index("ix_variants_package_id", table_name="variants")
    op.drop_column("apps", "packages_public")  # SQLite >= 3.35 drops it in place
    op.drop_index("ix_app_device_keys_app_id", table_name="app_device_keys")
    op.drop_table("app_device_keys")
