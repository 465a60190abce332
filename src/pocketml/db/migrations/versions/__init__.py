"""Alembic revisions of the pocketml database, oldest first."""
