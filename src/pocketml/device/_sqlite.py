"""The SQLite files a device keeps (telemetry queue, sample queue, federated store), opened
one way: WAL, ``synchronous=NORMAL`` (a commit survives an app kill; a power cut may lose
the last ones, never corrupt the file), autocommit unless a ``BEGIN`` says otherwise."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from pocketml.errors import Unavailable

__all__ = ["open_store"]


def open_store(
    path: Path,
    schema: str,
    what: str,
    upgrade: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """Open (creating it and its folder if needed) a device store with its schema.

    Args:
        path: the file.
        schema: ``CREATE TABLE IF NOT EXISTS ...`` statements.
        what: the store's name in the error ("the telemetry queue").
        upgrade: run after the schema (e.g. columns added by a later SDK release).

    Raises:
        Unavailable: the file cannot be opened or written (the message says what to check).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
        if upgrade is not None:
            upgrade(db)
    except sqlite3.Error as exc:
        raise Unavailable(
            f"cannot open {what} {path}: {exc}. Check that the cache directory is writable "
            "and not full."
        ) from exc
    return db
