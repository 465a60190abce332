"""The bounded, restart-proof telemetry and feedback queue (SQLite in WAL mode).

Events wait in ``events`` until a 2xx from ``POST /v1/telemetry`` confirms them. Sending is
exactly-once through the server's idempotent batch id: a batch id is assigned to the oldest
events and COMMITTED before the request goes out, so a retry after a lost response (or
after the app was killed) re-sends the same events under the same id and the server drops
the duplicate. Events are deleted only after the server acknowledged their batch.

The queue is bounded: beyond ``max_events`` the oldest unassigned events are dropped and
counted in ``dropped`` (a phone offline for a month must not fill its disk).
Feedback waits in its own table and is sent one message at a time (the server keeps the
latest per prediction id, so a re-send is harmless).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.device._sqlite import open_store
from pocketml.protocol import EVENT_COLUMN_TYPES, INFERENCE_QUEUE_FIELDS

__all__ = ["INFERENCE_FIELDS", "Batch", "OpenWindow", "TelemetryQueue"]

INFERENCE_FIELDS: tuple[str, ...] = INFERENCE_QUEUE_FIELDS
"""Column order of an inference tuple (stored as columns, not JSON: the cheap path).

The protocol's declaration of the inference event decides it (its common fields, then
its required ones); ``LocalModel`` builds its tuples in this order."""
_SQL_TYPES = {"string": "TEXT", "integer": "INTEGER", "number": "REAL"}
_INFERENCE_COLUMNS = {name: _SQL_TYPES[EVENT_COLUMN_TYPES[name]] for name in INFERENCE_FIELDS}
_INSERT_INFERENCE = (
    f"INSERT INTO events ({', '.join(INFERENCE_FIELDS)}) "
    f"VALUES ({', '.join('?' * len(INFERENCE_FIELDS))})"
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT,
    batch_id TEXT,
    {", ".join(f"{name} {sql}" for name, sql in _INFERENCE_COLUMNS.items())}
);
CREATE INDEX IF NOT EXISTS events_batch ON events (batch_id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sketch_windows (
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    n INTEGER NOT NULL,
    counts BLOB NOT NULL,
    layout TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS privacy_spent (
    day INTEGER PRIMARY KEY,
    epsilon REAL NOT NULL
);
"""


@dataclass(frozen=True)
class OpenWindow:
    """A model version's open sketch window as stored (``_sketcher`` owns its meaning)."""

    model: str
    version: int
    start: int
    n: int
    counts: bytes  # int64 in the layout's order, native byte order
    layout: dict[str, Any]  # {"names": [...], "sizes": [...]}
    policy: dict[str, Any]  # MonitorPolicy.to_dict()


@dataclass(frozen=True)
class Batch:
    """Events claimed under one persisted batch id."""

    batch_id: str
    events: list[dict[str, Any]]


class TelemetryQueue:
    """SQLite-backed queue of telemetry events and feedback messages.

    Args:
        path: the database file (``<cache>/telemetry.db``); opened on first use.
        max_events: most events kept; older unsent ones are dropped beyond it.
    """

    def __init__(self, path: Path, max_events: int = 10_000) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_store(self.path, _SCHEMA, "the telemetry queue", _add_missing_columns)
        return self._db

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- events -----------------------------------------------------------------------------

    def append(
        self,
        events: Iterable[dict[str, Any]],
        inferences: Sequence[tuple[Any, ...]] = (),
        windows: Sequence[OpenWindow] = (),
    ) -> int:
        """Store events; drop the oldest unassigned ones beyond the bound.

        Args:
            events: event dicts (stored as JSON).
            inferences: inference events as tuples in ``INFERENCE_FIELDS`` order (stored
                as columns, no JSON encoding: this is what the predict hot path buffers).
            windows: open sketch windows to store (replacing the model version's row),
                in the same transaction as the events (a closed window's ``profile``
                event and its successor's empty counts land together).

        Returns:
            How many events were dropped to stay within ``max_events``.
        """
        rows = [(json.dumps(e, separators=(",", ":")),) for e in events]
        if not rows and not inferences and not windows:
            return 0
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO events (body) VALUES (?)", rows)
                db.executemany(_INSERT_INFERENCE, inferences)
                db.executemany(
                    "INSERT OR REPLACE INTO sketch_windows VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            w.model,
                            w.version,
                            w.start,
                            w.n,
                            w.counts,
                            json.dumps(w.layout),
                            json.dumps(w.policy),
                        )
                        for w in windows
                    ],
                )
                (count,) = db.execute("SELECT COUNT(*) FROM events").fetchone()
                excess = max(0, count - self.max_events)
                if excess:
                    db.execute(
                        "DELETE FROM events WHERE id IN (SELECT id FROM events "
                        "WHERE batch_id IS NULL ORDER BY id LIMIT ?)",
                        (excess,),
                    )
                    self._bump(db, "dropped", excess)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return excess

    def claim_batch(self, limit: int) -> Batch | None:
        """The batch to send next: an already assigned one, else the oldest ``limit`` events.

        The new batch id is committed before this returns, so it survives a crash.

        Returns:
            The batch, or None when the queue is empty.
        """
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT batch_id FROM events WHERE batch_id IS NOT NULL ORDER BY id LIMIT 1"
                ).fetchone()
                if row is not None:
                    batch_id = row[0]
                else:
                    batch_id = "b-" + secrets.token_hex(16)
                    db.execute(
                        "UPDATE events SET batch_id = ? WHERE id IN (SELECT id FROM events "
                        "WHERE batch_id IS NULL ORDER BY id LIMIT ?)",
                        (batch_id, limit),
                    )
                rows = db.execute(
                    f"SELECT body, {', '.join(INFERENCE_FIELDS)} FROM events "
                    "WHERE batch_id = ? ORDER BY id",
                    (batch_id,),
                ).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        if not rows:
            return None
        return Batch(batch_id, [_event(row) for row in rows])

    def acknowledge(self, batch_id: str) -> None:
        """The server stored the batch: delete its events."""
        with self._lock:
            self._conn().execute("DELETE FROM events WHERE batch_id = ?", (batch_id,))

    def reject(self, batch_id: str) -> int:
        """The server refused the batch as invalid: delete it and count the loss."""
        with self._lock:
            db = self._conn()
            cursor = db.execute("DELETE FROM events WHERE batch_id = ?", (batch_id,))
            self._bump(db, "rejected", cursor.rowcount)
            return int(cursor.rowcount)

    def release(self, batch_id: str) -> None:
        """Un-assign a batch the server refused unseen (413), so it can be split."""
        with self._lock:
            self._conn().execute(
                "UPDATE events SET batch_id = NULL WHERE batch_id = ?", (batch_id,)
            )

    def pending(self) -> int:
        """Events waiting to be sent."""
        with self._lock:
            (count,) = self._conn().execute("SELECT COUNT(*) FROM events").fetchone()
        return int(count)

    def counter(self, name: str) -> int:
        """A loss counter: "dropped" (over the bound) or "rejected" (refused by the server)."""
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT value FROM counters WHERE name = ?", (name,))
                .fetchone()
            )
        return 0 if row is None else int(row[0])

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, amount: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    # -- sketches ---------------------------------------------------------------------------

    def open_windows(self) -> list[OpenWindow]:
        """The sketch windows a previous run left open (unreadable rows are skipped)."""
        with self._lock:
            rows = self._conn().execute("SELECT * FROM sketch_windows").fetchall()
        windows = []
        for model, version, start, n, counts, layout, policy in rows:
            try:
                windows.append(
                    OpenWindow(
                        model,
                        int(version),
                        int(start),
                        int(n),
                        bytes(counts),
                        json.loads(layout),
                        json.loads(policy),
                    )
                )
            except (TypeError, ValueError):
                continue
        return windows

    def spend_privacy(self, day: int, epsilon: float, budget: float) -> bool:
        """Spend ``epsilon`` of UTC ``day`` when the day's total stays within ``budget``.

        Returns:
            True when spent (committed before this returns), False when it would not fit.
        """
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT epsilon FROM privacy_spent WHERE day = ?", (day,))
                found = row.fetchone()
                spent = 0.0 if found is None else float(found[0])
                if spent + epsilon > budget * (1 + 1e-9):
                    db.execute("ROLLBACK")
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO privacy_spent (day, epsilon) VALUES (?, ?)",
                    (day, spent + epsilon),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return True

    def spent_privacy(self, day: int) -> float:
        """The epsilon spent on UTC ``day``."""
        with self._lock:
            found = (
                self._conn()
                .execute("SELECT epsilon FROM privacy_spent WHERE day = ?", (day,))
                .fetchone()
            )
        return 0.0 if found is None else float(found[0])

    # -- feedback ---------------------------------------------------------------------------

    def add_feedback(self, body: dict[str, Any]) -> None:
        """Queue one feedback message for a later flush."""
        with self._lock:
            self._conn().execute("INSERT INTO feedback (body) VALUES (?)", (json.dumps(body),))

    def feedback(self) -> list[tuple[int, dict[str, Any]]]:
        """Queued feedback messages, oldest first, with their row ids."""
        with self._lock:
            rows = self._conn().execute("SELECT id, body FROM feedback ORDER BY id").fetchall()
        return [(int(i), json.loads(body)) for i, body in rows]

    def remove_feedback(self, row_id: int) -> None:
        """Delete a feedback message the server accepted."""
        with self._lock:
            self._conn().execute("DELETE FROM feedback WHERE id = ?", (row_id,))

    def clear(self) -> tuple[int, int]:
        """Delete every queued event and feedback message (``Device.forget_me``).

        Returns:
            (events deleted, feedback messages deleted).
        """
        with self._lock:
            db = self._conn()
            events = db.execute("DELETE FROM events").rowcount
            feedback = db.execute("DELETE FROM feedback").rowcount
        return int(events), int(feedback)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Add the inference columns a queue written by an older SDK lacks (kept across updates)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    for name, sql in _INFERENCE_COLUMNS.items():
        if name not in present:
            db.execute(f"ALTER TABLE events ADD COLUMN {name} {sql}")


def _event(row: tuple[Any, ...]) -> dict[str, Any]:
    body, *columns = row
    if body is not None:
        return dict(json.loads(body))
    event: dict[str, Any] = {
        "type": "inference",
        **dict(zip(INFERENCE_FIELDS, columns, strict=True)),
    }
    event["variant"] = event["variant"] or ""
    event["confidence"] = min(1.0, max(0.0, float(event["confidence"])))
    return event
