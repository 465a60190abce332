"""The device's federated state on disk: ``<cache>/federated.db`` (SQLite, WAL).

Three things live here, each written in one transaction so an app killed at any moment
leaves either the old or the new state, never half of one:

- ``settings``: the user's consent to federated training (default off, like sample
  capture's consent, and stored the same way).
- ``examples``: the labelled inputs the app gave for on-device training. They never leave
  the device (only an update computed from them does); turning consent off or
  ``forget_me`` deletes them and ends every round in progress. Inputs are stored raw (as
  the app would pass them to ``predict``), not as embeddings: the backbone that embeds
  them is whatever package is installed when a round runs.
- ``rounds``: one row per (task, round) the device joined, with its stage. The stage is
  what makes a kill harmless: an update is stored with its idempotency key *before* the
  upload, so a retry after a cut connection or a restart sends the same bytes under the
  same key (the server counts it once), and a round that reached ``uploaded`` or
  ``abandoned`` is never worked on again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pocketml.device._sqlite import open_store
from pocketml.errors import InvalidInput

__all__ = ["MAX_EXAMPLES_PER_MODEL", "FederatedStore", "RoundRecord", "RoundStage"]

# Oldest examples are evicted beyond this: a head trains well on a few hundred, and the
# file must not grow without bound on a phone.
MAX_EXAMPLES_PER_MODEL = 2_000

RoundStage = Literal["joined", "ready", "uploaded", "abandoned"]
STAGES: tuple[RoundStage, ...] = ("joined", "ready", "uploaded", "abandoned")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS examples (
    example_id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL,
    shape TEXT NOT NULL,
    data BLOB NOT NULL,
    label TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS examples_model ON examples (model, example_id);
CREATE TABLE IF NOT EXISTS rounds (
    task_id TEXT NOT NULL,
    round_id TEXT NOT NULL,
    model TEXT NOT NULL,
    stage TEXT NOT NULL,
    secure INTEGER NOT NULL,
    deadline REAL NOT NULL,
    upload_key TEXT NOT NULL,
    round_url TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    requires TEXT NOT NULL,
    payload BLOB,
    detail TEXT,
    updated_at REAL NOT NULL,
    clipped INTEGER,
    PRIMARY KEY (task_id, round_id)
);
"""


def _upgrade(db: sqlite3.Connection) -> None:
    """Add the columns a later SDK release introduced to a file an older one created."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(rounds)")}
    if "clipped" not in columns:  # added with the upload's `clipped` parameter
        db.execute("ALTER TABLE rounds ADD COLUMN clipped INTEGER")


@dataclass(frozen=True)
class RoundRecord:
    """What the device remembers of one round it joined.

    Attributes:
        task_id, round_id: the round.
        model: the model the task trains.
        stage: ``joined`` (working on it), ``ready`` (update stored, upload owed),
            ``uploaded`` (the server acknowledged it) or ``abandoned`` (given up; never
            resumed).
        secure: whether the round masks updates (secure aggregation).
        deadline: unix seconds after which the round is given up.
        upload_key: the idempotency key of this device's upload in this round.
        round_url: the round's path on the server.
        client_id: the device's number in the round.
        requires: the conditions the task requires while participating
            (``charging``, ``wifi``, ``idle``: bools).
        payload: the stored upload body (``ready``), else None.
        detail: why the round was abandoned, or a note.
        clipped: whether the stored update's norm exceeded ``clip_norm`` before the device
            clipped it (the upload's ``clipped`` parameter); None when unknown (nothing
            stored, or stored by an SDK that did not record it).
    """

    task_id: str
    round_id: str
    model: str
    stage: RoundStage
    secure: bool
    deadline: float
    upload_key: str
    round_url: str
    client_id: int
    requires: dict[str, bool]
    payload: bytes | None
    detail: str | None
    clipped: bool | None = None


_ROUND_COLUMNS = (
    "task_id, round_id, model, stage, secure, deadline, upload_key, round_url, client_id, "
    "requires, payload, detail, clipped"
)
_INSERT_ROUND = (
    "INSERT INTO rounds (task_id, round_id, model, stage, secure, deadline, upload_key, "
    "round_url, client_id, requires, payload, detail, updated_at) "
)


def _record(row: tuple[Any, ...]) -> RoundRecord:
    requires = json.loads(row[9]) if row[9] else {}
    return RoundRecord(
        task_id=row[0],
        round_id=row[1],
        model=row[2],
        stage=row[3],
        secure=bool(row[4]),
        deadline=float(row[5]),
        upload_key=row[6],
        round_url=row[7],
        client_id=int(row[8]),
        requires={str(k): bool(v) for k, v in requires.items()},
        payload=row[10],
        detail=row[11],
        clipped=None if row[12] is None else bool(row[12]),
    )


class FederatedStore:
    """The SQLite file of consent, local examples and joined rounds.

    Args:
        path: the database file; created on first write (a device that never opted in
            has none).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    def exists(self) -> bool:
        """Whether the file was ever created."""
        return self._db is not None or self.path.exists()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = open_store(self.path, _SCHEMA, "the federated store", _upgrade)
        return self._db

    def close(self) -> None:
        """Close the connection (reopened on next use)."""
        with self.lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- consent ------------------------------------------------------------------------------

    def consent(self) -> bool:
        """The stored consent (False when never given)."""
        with self.lock:
            if not self.exists():
                return False
            row = (
                self._conn().execute("SELECT value FROM settings WHERE name = 'consent'").fetchone()
            )
        return row is not None and row[0] == "true"

    def set_consent(self, value: bool, at: float) -> int:
        """Store consent; turning it off deletes every example and ends every round still
        owed work, its unsent update with it (as ``forget``, detail ``consent withdrawn``:
        turning consent on again never resumes them). Returns the examples deleted."""
        with self.lock:
            db = self._conn()
            db.execute("BEGIN")
            try:
                db.execute(
                    "INSERT INTO settings VALUES ('consent', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    ("true" if value else "false",),
                )
                deleted = 0
                if not value:
                    deleted = int(db.execute("DELETE FROM examples").rowcount)
                    _abandon_open_rounds(db, "consent withdrawn", at)
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise
        return deleted

    # -- examples -------------------------------------------------------------------------------

    def add_example(self, model: str, tensor: np.ndarray, label: str, at: float) -> None:
        """Store one labelled input; the oldest beyond ``MAX_EXAMPLES_PER_MODEL`` go."""
        data = np.ascontiguousarray(tensor, dtype="<f4")
        with self.lock:
            db = self._conn()
            db.execute("BEGIN")
            try:
                db.execute(
                    "INSERT INTO examples (model, shape, data, label, added_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (model, json.dumps(list(data.shape)), data.tobytes(), label, at),
                )
                db.execute(
                    "DELETE FROM examples WHERE model = ? AND example_id NOT IN ("
                    "SELECT example_id FROM examples WHERE model = ? "
                    "ORDER BY example_id DESC LIMIT ?)",
                    (model, model, MAX_EXAMPLES_PER_MODEL),
                )
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    def count_examples(self, model: str) -> int:
        """Examples stored for ``model``."""
        with self.lock:
            if not self.exists():
                return 0
            row = (
                self._conn()
                .execute("SELECT COUNT(*) FROM examples WHERE model = ?", (model,))
                .fetchone()
            )
        return int(row[0])

    def examples(self, model: str) -> tuple[np.ndarray, list[str]]:
        """The stored inputs of ``model`` (stacked, float32) and their labels, oldest first.

        Raises:
            InvalidInput: the stored inputs do not all have one shape (the app changed
                what it stores; ``clear_examples`` and collect again).
        """
        with self.lock:
            if not self.exists():
                return np.zeros((0,), dtype=np.float32), []
            rows = (
                self._conn()
                .execute(
                    "SELECT shape, data, label FROM examples WHERE model = ? ORDER BY example_id",
                    (model,),
                )
                .fetchall()
            )
        if not rows:
            return np.zeros((0,), dtype=np.float32), []
        shapes = {row[0] for row in rows}
        if len(shapes) != 1:
            raise InvalidInput(
                f"the stored examples of {model!r} have {len(shapes)} different shapes; "
                "clear them (Device.clear_training_examples) and add them again"
            )
        shape = tuple(json.loads(rows[0][0]))
        stacked = np.stack([np.frombuffer(r[1], dtype="<f4").reshape(shape) for r in rows])
        return stacked.astype(np.float32), [str(r[2]) for r in rows]

    def clear_examples(self) -> int:
        """Delete every example; returns how many."""
        with self.lock:
            if not self.exists():
                return 0
            return int(self._conn().execute("DELETE FROM examples").rowcount)

    # -- rounds ---------------------------------------------------------------------------------

    def round(self, task_id: str, round_id: str) -> RoundRecord | None:
        """The device's record of a round, None when it never joined it."""
        with self.lock:
            if not self.exists():
                return None
            row = (
                self._conn()
                .execute(
                    f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE task_id = ? AND round_id = ?",
                    (task_id, round_id),
                )
                .fetchone()
            )
        return None if row is None else _record(row)

    def open_rounds(self) -> list[RoundRecord]:
        """Rounds still owed work (``joined`` or ``ready``), oldest first."""
        with self.lock:
            if not self.exists():
                return []
            rows = (
                self._conn()
                .execute(
                    f"SELECT {_ROUND_COLUMNS} FROM rounds WHERE stage IN ('joined', 'ready') "
                    "ORDER BY updated_at"
                )
                .fetchall()
            )
        return [_record(row) for row in rows]

    def join(
        self,
        task_id: str,
        round_id: str,
        *,
        model: str,
        secure: bool,
        deadline: float,
        upload_key: str,
        round_url: str,
        client_id: int,
        requires: dict[str, bool],
        at: float,
    ) -> RoundRecord:
        """Record that the device works on a round (a second call keeps the first record)."""
        with self.lock:
            self._conn().execute(
                _INSERT_ROUND + "VALUES (?, ?, ?, 'joined', ?, ?, ?, ?, ?, ?, NULL, NULL, ?) "
                "ON CONFLICT(task_id, round_id) DO NOTHING",
                (
                    task_id,
                    round_id,
                    model,
                    int(secure),
                    deadline,
                    upload_key,
                    round_url,
                    client_id,
                    json.dumps(requires, sort_keys=True),
                    at,
                ),
            )
            found = self.round(task_id, round_id)
        assert found is not None
        return found

    def set_stage(
        self,
        task_id: str,
        round_id: str,
        stage: RoundStage,
        at: float,
        *,
        payload: bytes | None = None,
        detail: str | None = None,
        clipped: bool | None = None,
    ) -> bool:
        """Move a round to ``stage``; the payload (and whether it was ``clipped``) is kept
        only while an upload is owed.

        An ``abandoned`` round stays abandoned: a step that was under way when the round
        was given up (``forget_me``, consent withdrawn, another thread's ``_give_up``)
        cannot bring it back. Returns whether the round moved (False: abandoned, or never
        joined).
        """
        if stage not in STAGES:
            raise InvalidInput(f"a round's stage is one of {STAGES}; got {stage!r}")
        with self.lock:
            owed = stage == "ready"
            moved = (
                self._conn()
                .execute(
                    "UPDATE rounds SET stage = ?, payload = ?, clipped = ?, detail = ?, "
                    "updated_at = ? WHERE task_id = ? AND round_id = ? AND stage != 'abandoned'",
                    (
                        stage,
                        payload if owed else None,
                        None if not owed or clipped is None else int(clipped),
                        detail,
                        at,
                        task_id,
                        round_id,
                    ),
                )
                .rowcount
            )
        return bool(moved)

    def refuse(self, task_id: str, round_id: str, model: str, reason: str, at: float) -> None:
        """Record a round the device will not work on (not selected, closed): ``abandoned``
        without having joined, so it is not asked again."""
        with self.lock:
            self._conn().execute(
                _INSERT_ROUND + "VALUES (?, ?, ?, 'abandoned', 0, 0, '', '', 0, '{}', NULL, ?, ?) "
                "ON CONFLICT(task_id, round_id) DO NOTHING",
                (task_id, round_id, model, reason, at),
            )

    def stage_counts(self) -> dict[str, int]:
        """How many joined rounds are in each stage (for reports and tests)."""
        with self.lock:
            if not self.exists():
                return {}
            rows = self._conn().execute("SELECT stage, COUNT(*) FROM rounds GROUP BY stage")
            return {str(stage): int(n) for stage, n in rows.fetchall()}

    def forget(self, at: float) -> int:
        """``forget_me``: delete every example and every update not yet sent (those rounds
        become ``abandoned``; the records stay, holding no data, so no round is joined
        twice). Returns the examples deleted."""
        with self.lock:
            if not self.exists():
                return 0
            db = self._conn()
            db.execute("BEGIN")
            try:
                n = int(db.execute("DELETE FROM examples").rowcount)
                _abandon_open_rounds(db, "forget_me", at)
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise
            return n


def _abandon_open_rounds(db: sqlite3.Connection, detail: str, at: float) -> None:
    """Inside a transaction: every ``joined``/``ready`` round becomes ``abandoned`` and
    loses its stored update."""
    db.execute(
        "UPDATE rounds SET stage = 'abandoned', payload = NULL, clipped = NULL, detail = ?, "
        "updated_at = ? WHERE stage IN ('joined', 'ready')",
        (detail, at),
    )
