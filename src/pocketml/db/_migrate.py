"""Alembic upgrades of the one pocketml database, run in code at start-up.

Migrations run programmatically from the ``migrations`` folder shipped inside this
package, under an advisory lock on PostgreSQL so replicas starting together do not race.
The revision ids, the chain and the version table (``registry_alembic_version``) are the
ones the registry used before the folder moved here, so existing databases upgrade as
before.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import sqlalchemy as sa

from pocketml.db._engine import create_engine, translate_errors

__all__ = [
    "VERSION_TABLE",
    "alembic_config",
    "current_revision",
    "head_revision",
    "migrate_database",
    "run_migrations",
]

logger = logging.getLogger(__name__)

VERSION_TABLE = "registry_alembic_version"
# "pmlr": kept from the registry days so old and new replicas exclude each other
_MIGRATION_LOCK_ID = 0x706D6C72


def _script_location() -> str:
    return str(resources.files("pocketml.db") / "migrations")


def alembic_config(connection: sa.Connection) -> Any:
    """An Alembic ``Config`` bound to ``connection`` (for ``alembic.command`` calls).

    ``run_migrations`` is the way to upgrade; this is for the rare direct command, such
    as a downgrade in a test or a recovery script.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", _script_location())
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this pocketml."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", _script_location())
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def run_migrations(engine: sa.Engine, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (idempotent: a current database is unchanged).

    Raises:
        Unavailable: the database cannot be reached or a migration failed.
    """
    from alembic import command

    with translate_errors("migrate the registry database"), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        command.upgrade(alembic_config(connection), revision)
    logger.info("registry database at revision %s", current_revision(engine))


def migrate_database(database_url: str) -> str | None:
    """Upgrade the registry database at ``database_url`` to the newest revision.

    What ``Registry.open()`` does at start-up, for deploy jobs that migrate separately.

    Returns:
        The revision the database is at afterwards.

    Raises:
        InvalidInput: a malformed or unsupported URL.
        Unavailable: the database cannot be reached or a migration failed.
    """
    engine = create_engine(database_url)
    try:
        run_migrations(engine)
        return current_revision(engine)
    finally:
        engine.dispose()


def current_revision(engine: sa.Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    from alembic.migration import MigrationContext

    with translate_errors("read the registry schema revision"), engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
