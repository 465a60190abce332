"""Database plumbing: engines (SQLite pragmas, psycopg 3), Alembic upgrades, error seams.

SQLite gets WAL journalling, foreign keys and a busy timeout on every connection, and its
transactions are begun explicitly (``BEGIN``, or ``BEGIN IMMEDIATE`` for writes) so
writers queue on the database lock instead of failing on a stale snapshot. Migrations run
programmatically from the ``migrations`` folder shipped inside the package, under an
advisory lock on PostgreSQL so replicas starting together do not race.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

from pocketml.errors import Conflict, InvalidInput, PocketMLError, Unavailable

__all__ = [
    "VERSION_TABLE",
    "WRITE",
    "create_engine",
    "current_revision",
    "migrate_database",
    "run_migrations",
    "translate_errors",
]

logger = logging.getLogger(__name__)

VERSION_TABLE = "registry_alembic_version"
WRITE = {"pocketml_write": True}
_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_ID = 0x706D6C72  # "pmlr": the registry's PostgreSQL advisory lock


def create_engine(url: str) -> sa.Engine:
    """Create an engine for a SQLite or PostgreSQL URL with the registry's settings.

    Raises:
        InvalidInput: the URL is malformed or names an unsupported database.
    """
    try:
        parsed = sa.engine.make_url(url)
    except exc.ArgumentError as error:
        raise InvalidInput(
            f"database URL must look like sqlite:///path or postgresql+psycopg://user@host/db; "
            f"got {url!r}."
        ) from error
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = sa.create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000}
        )
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise InvalidInput(
        f"the registry runs on SQLite or PostgreSQL; got a {backend!r} URL. "
        "Use sqlite:///path or postgresql+psycopg://user@host/db."
    )


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see "begin").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the lock up front: a deferred transaction that reads and then
        # writes can fail with SQLITE_BUSY when another writer commits in between.
        is_write = connection.get_execution_options().get("pocketml_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if is_write else "BEGIN")


@contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn SQLAlchemy errors raised inside the block into pocketml errors.

    Args:
        action: what was being done, for the message ("create model digits").

    Raises:
        Conflict: a unique constraint failed (the object exists already).
        Unavailable: the database cannot be reached, is locked too long, or failed.
    """
    try:
        yield
    except PocketMLError:
        raise
    except exc.IntegrityError as error:
        raise Conflict(f"cannot {action}: it conflicts with an existing object.") from error
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise Unavailable(
            f"cannot {action}: the database is unreachable or busy ({_short(error)}). "
            "Check POCKETML_DATABASE_URL and that the database server is running."
        ) from error
    except exc.SQLAlchemyError as error:
        raise Unavailable(f"cannot {action}: database error ({_short(error)}).") from error


def _short(error: exc.SQLAlchemyError) -> str:
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0][:200]


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    config = Config()
    location = resources.files("pocketml.registry") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this pocketml."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("pocketml.registry") / "migrations")
    )
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
        command.upgrade(_alembic_config(connection), revision)
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
