"""Alembic migrations of the pocketml database (every service's tables).

Run by ``pocketml.db.run_migrations`` (``Registry.open()`` at start-up).
"""
