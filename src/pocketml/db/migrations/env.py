"""Alembic environment of the pocketml database: runs on the connection it is handed.

pocketml never runs Alembic from a command line: ``pocketml.db`` builds the Config in code
(``alembic_config``) and hands its open connection over in ``config.attributes``. SQLite
uses batch mode (``render_as_batch``) so ALTERs work there too. The version table is
``registry_alembic_version`` (its name from before the migrations moved out of the
registry), so existing databases keep their history.
"""

from __future__ import annotations

from alembic import context

from pocketml.db._base import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable from a hand-made alembic.ini
    raise RuntimeError(
        "the pocketml migrations run through pocketml.db (run_migrations, Registry.open()); "
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
