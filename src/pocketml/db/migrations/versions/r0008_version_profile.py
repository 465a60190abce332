"""A version's reference profile (issue 13): stored with the version, shipped in its packages.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

``model_versions.reference_profile`` holds the reference profile JSON a push brought
(``pocketml.sketch.ReferenceProfile.to_dict()``; NULL for versions without one, all
versions pushed before this revision included). ``reference_profile_sha256`` is the sha256 of its
canonical JSON, which is byte for byte the ``profile.json`` member of the version's
packages: an admin compares the two without reading either.

Two nullable ADD COLUMNs: in place on both dialects, no table copy.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the nullable profile and its sha256 to model_versions."""
    op.add_column("model_versions", sa.Column("reference_profile", sa.JSON(), nullable=True))
    op.add_column(
        "model_versions", sa.Column("reference_profile_sha256", sa.String(64), nullable=True)
    )


def downgrade() -> None:
    """Drop them (SQLite >= 3.35 drops a column in place)."""
    op.execute("ALTER TABLE model_versions DROP COLUMN reference_profile_sha256")
    op.execute("ALTER TABLE model_versions DROP COLUMN reference_profile")
