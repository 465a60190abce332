"""Federated participants: whether the device clipped its update (the upload's ``clipped``).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

A device clips its update to ``clip_norm`` before it uploads, so the server cannot tell
from the bytes whether the update was above the norm; adaptive clipping counts the
device's own answer (``PUT .../update?clipped=true|false``). NULL: the device did not say
(an older SDK); the server's measurement counts then.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``federated_participants.clipped``."""
    with op.batch_alter_table("federated_participants") as batch:
        batch.add_column(sa.Column("clipped", sa.Boolean(), nullable=True))


def downgrade() -> None:
    """Drop ``federated_participants.clipped``."""
    with op.batch_alter_table("federated_participants") as batch:
        batch.drop_column("clipped")
