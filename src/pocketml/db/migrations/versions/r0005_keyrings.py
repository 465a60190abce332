"""Keyrings: revocable signing keys and the signed key list devices follow.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Adds ``app_keys.revoked_at`` (a revoked signing key leaves the published keyring for good)
and ``app_keyrings``: one row per (app, sequence) holding the canonical JSON of a signed
keyring. The primary key makes two concurrent key changes of one app conflict instead of
publishing two keyrings with the same sequence. Existing apps get their first keyring on
first read (signing needs the master key, which a migration does not have).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the revocation timestamp and the keyring table."""
    with op.batch_alter_table("app_keys") as batch:
        batch.add_column(sa.Column("revoked_at", _TS, nullable=True))
    op.create_table(
        "app_keyrings",
        sa.Column("app_id", sa.String(40), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"], ["apps.id"], name="fk_app_keyrings_app_id_apps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("app_id", "sequence", name="pk_app_keyrings"),
    )


def downgrade() -> None:
    """Drop the keyring table and the revocation timestamp."""
    op.drop_table("app_keyrings")
    with op.batch_alter_table("app_keys") as batch:
        batch.drop_column("revoked_at")
