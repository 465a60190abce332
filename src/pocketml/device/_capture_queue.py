"""The on-disk queue of consented samples: ``<cache>/samples.db`` (SQLite, WAL).

Samples wait in ``samples`` until the server acknowledged their batch; the user's choice
(``settings``), the bytes kept per UTC day (``budget``) and the drop counters live beside
them. ``SampleCapture`` (``_capture``) decides what to keep and when to send; this class
only stores. A batch id is committed with its samples before a request goes out, so a
retry re-sends the same samples (the server is idempotent per sample id anyway).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device._sqlite import open_store
from pocketml.protocol import MAX_SAMPLE_BATCH_BYTES, MAX_SAMPLES_PER_BATCH, CapturePolicy

__all__ = ["HeldSample", "SampleQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    sample_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    prediction_id TEXT,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    predicted TEXT NOT NULL,
    confidence REAL NOT NULL,
    label TEXT,
    captured_at REAL NOT NULL,
    wifi_only INTEGER NOT NULL,
    retention_days INTEGER NOT NULL,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS samples_batch ON samples (batch_id);
CREATE INDEX IF NOT EXISTS samples_prediction ON samples (prediction_id);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS budget (day INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass
class HeldSample:
    """A redacted, sampled prediction on its way to the queue."""

    model: str
    version: int
    prediction_id: str
    tensor: np.ndarray
    predicted: str
    confidence: float
    captured_at: float
    policy: CapturePolicy


_COLUMNS = (
    "sample_id, model, version, prediction_id, shape, data, predicted, confidence, label, "
    "captured_at"
)


class SampleQueue:
    """The SQLite file of samples, settings, the daily budget and counters.

    Args:
        path: the database file; opened (and created) on first use.
    """

    def __init__(self, path: Path, *, new_id: Callable[[], str] | None = None) -> None:
        self.path = Path(path)
        self._new_id = new_id or (lambda: secrets.token_hex(16))
        self.lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._budget_day = -1  # the UTC day ``_budget_used`` counts (read from disk once)
        self._budget_used = 0

    def exists(self) -> bool:
        """Whether the file was ever created (a device that never chose has none)."""
        return self._db is not None or self.path.exists()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_store(self.path, _SCHEMA, "the sample queue")
        return self._db

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- settings and counters --------------------------------------------------------------

    def setting(self, name: str) -> str | None:
        """A stored setting, None when never set (or no file)."""
        with self.lock:
            if not self.exists():
                return None
            found = (
                self._conn()
                .execute("SELECT value FROM settings WHERE name = ?", (name,))
                .fetchone()
            )
        return None if found is None else str(found[0])

    def set_setting(self, name: str, value: str) -> None:
        """Store a setting."""
        with self.lock:
            self._conn().execute(
                "INSERT INTO settings VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def bump(self, name: str, by: int = 1) -> None:
        """Add ``by`` to a counter."""
        with self.lock:
            self._conn().execute(
                "INSERT INTO counters VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counter(self, name: str) -> int:
        """A counter's value (0 when never bumped)."""
        with self.lock:
            if not self.exists():
                return 0
            found = (
                self._conn()
                .execute("SELECT value FROM counters WHERE name = ?", (name,))
                .fetchone()
            )
        return int(found[0]) if found else 0

    # -- samples ------------------------------------------------------------------------------

    def pending(self) -> int:
        """Samples on disk (sent or not yet acknowledged)."""
        with self.lock:
            if not self.exists():
                return 0
            return int(self._conn().execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def clear(self) -> int:
        """Delete every sample; returns how many."""
        with self.lock:
            if not self.exists():
                return 0
            return int(self._conn().execute("DELETE FROM samples").rowcount)

    def write(self, held: HeldSample, label: str | None) -> bool:
        """Store a sample within its day's byte budget, atomically with the budget.

        Returns:
            False when the budget refused it (counted in ``dropped_budget``).
        """
        data = held.tensor.astype("<f4").tobytes()
        with self.lock:
            db = self._conn()
            day = int(held.captured_at // 86_400)
            if day != self._budget_day:  # once per UTC day and process: the disk's count
                row = db.execute("SELECT bytes FROM budget WHERE day = ?", (day,)).fetchone()
                self._budget_day, self._budget_used = day, int(row[0]) if row else 0
                db.execute("DELETE FROM budget WHERE day < ?", (day - 2,))
            if self._budget_used + len(data) > held.policy.max_bytes_per_day:
                self.bump("dropped_budget")
                return False
            db.execute("BEGIN")
            try:
                db.execute(
                    "INSERT INTO budget VALUES (?, ?) "
                    "ON CONFLICT(day) DO UPDATE SET bytes = bytes + excluded.bytes",
                    (day, len(data)),
                )
                db.execute(
                    "INSERT INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        self._new_id(),
                        held.model,
                        held.version,
                        held.prediction_id,
                        json.dumps(list(held.tensor.shape)),
                        data,
                        held.predicted,
                        float(min(max(held.confidence, 0.0), 1.0)),
                        label,
                        held.captured_at,
                        int(held.policy.wifi_only),
                        held.policy.retention_days,
                    ),
                )
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise
            self._budget_used += len(data)
        return True

    def attach_label(self, prediction_id: str, label: str) -> None:
        """Give unsent samples of this prediction the user's label."""
        with self.lock:
            if self.exists():
                self._conn().execute(
                    "UPDATE samples SET label = ? WHERE prediction_id = ? AND batch_id IS NULL",
                    (label, prediction_id),
                )

    def expire(self, now: float) -> int:
        """Delete samples older than their ``retention_days`` (those of a batch that could not
        be sent yet too: retention is a promise to the user); returns how many."""
        with self.lock:
            if not self.exists():
                return 0
            n = int(
                self._conn()
                .execute(
                    "DELETE FROM samples WHERE captured_at < ? - retention_days * 86400",
                    (now,),
                )
                .rowcount
            )
            if n:
                self.bump("expired", n)
            return n

    def claim(self, on_wifi: bool) -> tuple[str, list[tuple[Any, ...]]] | None:
        """The oldest batch claimed before (a retry), else a new one of the oldest samples
        (at most ``MAX_SAMPLES_PER_BATCH`` and ``MAX_SAMPLE_BATCH_BYTES``); off Wi-Fi only
        samples whose policy allows it. None when nothing is to send."""
        with self.lock:
            db = self._conn()
            row = db.execute(
                "SELECT batch_id FROM samples WHERE batch_id IS NOT NULL GROUP BY batch_id "
                "HAVING ? OR MAX(wifi_only) = 0 LIMIT 1",
                (int(on_wifi),),
            ).fetchone()
            if row is None:
                wifi = "" if on_wifi else "AND wifi_only = 0"
                candidates = db.execute(
                    f"SELECT sample_id, length(data) FROM samples WHERE batch_id IS NULL {wifi} "
                    f"ORDER BY captured_at LIMIT {MAX_SAMPLES_PER_BATCH}"
                ).fetchall()
                chosen: list[str] = []
                size = 0
                for sample_id, nbytes in candidates:
                    if chosen and size + nbytes > MAX_SAMPLE_BATCH_BYTES:
                        break
                    chosen.append(sample_id)
                    size += nbytes
                if not chosen:
                    return None
                batch_id = secrets.token_hex(16)
                db.executemany(
                    "UPDATE samples SET batch_id = ? WHERE sample_id = ?",
                    [(batch_id, s) for s in chosen],
                )
            else:
                batch_id = row[0]
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM samples WHERE batch_id = ?", (batch_id,)
            ).fetchall()
            return batch_id, rows

    def remove(self, batch_id: str) -> None:
        """Delete a batch's samples (acknowledged, or refused for good)."""
        with self.lock:
            self._conn().execute("DELETE FROM samples WHERE batch_id = ?", (batch_id,))

    def waiting_for_wifi(self) -> bool:
        """Whether unsent samples wait for Wi-Fi."""
        with self.lock:
            if not self.exists():
                return False
            found = (
                self._conn()
                .execute("SELECT 1 FROM samples WHERE batch_id IS NULL AND wifi_only = 1 LIMIT 1")
                .fetchone()
            )
        return found is not None
