"""Alembic environment of the registry: runs on the connection ``Registry.open()`` passes.

The registry never runs Alembic from a command line: ``pocketml.registry._db`` builds the
Config in code and hands its open connection over in ``config.attributes``. SQLite uses
batch mode (``render_as_batch``) so ALTERs work there too. The version table is the
registry's own, so other services can keep their own Alembic history in the same database.
"""

from __future__ import annotations

from alembic import context

from pocketml.registry._orm import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-made alembic.ini
    raise RuntimeError(
        "the registry migrations run through pocketml.registry (Registry.open()); "
        "pass a connection in config.attributes['connection']."
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table=config.attributes.get("version_table", "registry_alembic_version"),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
