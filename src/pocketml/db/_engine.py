"""Engines for SQLite and PostgreSQL, and the one seam that turns database errors into ours.

SQLite gets WAL journalling, foreign keys and a busy timeout on every connection, and its
transactions are begun explicitly (``BEGIN``, or ``BEGIN IMMEDIATE`` for writes) so
writers queue on the database lock instead of failing on a stale snapshot. A writer asks
for that with ``engine.connect().execution_options(**WRITE)``; the same option is a no-op
on PostgreSQL, so store code is written once for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc

from pocketml.errors import Conflict, InvalidInput, PocketMLError, Unavailable

__all__ = ["WRITE", "create_engine", "translate_errors"]

WRITE = {"pocketml_write": True}
_BUSY_TIMEOUT_MS = 30_000


def create_engine(url: str) -> sa.Engine:
    """Create an engine for a SQLite or PostgreSQL URL with pocketml's settings.

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
        f"pocketml's database runs on SQLite or PostgreSQL; got a {backend!r} URL. "
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
