"""Consented sample capture on the device: consent, the PII hook, the disk queue, upload.

Nothing is captured unless the app called ``Device.set_consent(True)`` (persisted here,
default off) AND the version's ``CapturePolicy`` (from the manifest) is enabled. A
prediction is eligible per ``policy.when`` and kept with probability ``policy.rate``
(a per-device seeded RNG, so simulations are reproducible). The app's redactor
``fn(model, input) -> array | None`` runs on a copy of the input before it is held or
written anywhere (None drops the sample). In ``feedback`` mode the redacted sample waits
in memory (at most ``max_hold``, oldest evicted) until ``Device.feedback`` gives its
label; in the other modes it is written at once and a later label is attached while it
is still unsent.

Samples live in ``<cache>/samples.db`` (SQLite, WAL; they survive an app kill) within a
byte budget per UTC day (``max_bytes_per_day``: beyond it they are dropped and counted)
and ``retention_days`` (older unsent ones are deleted at flush). ``flush`` sends them in
batches of at most ``MAX_SAMPLES_PER_BATCH`` samples and ``MAX_SAMPLE_BATCH_BYTES`` tensor
bytes; a batch's id is committed with its samples before the request goes out, so a
retry re-sends the same ids and the server stores each sample once. Upload happens only
with consent and, under ``wifi_only``, when the app's ``on_wifi()`` predicate says so.
Turning consent off deletes every queued sample; ``forget`` deletes them too.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device._net import DeviceHttp
from pocketml.errors import InvalidInput, PayloadTooLarge, PocketMLError, Unavailable
from pocketml.protocol import (
    MAX_SAMPLE_BATCH_BYTES,
    MAX_SAMPLES_PER_BATCH,
    CapturePolicy,
    encode_tensor,
)
from pocketml.sketch import LAYOUT_RANK, ReferenceProfile, input_features

__all__ = ["CaptureFlush", "CaptureTap", "Redactor", "SampleCapture"]

logger = logging.getLogger(__name__)

Redactor = Callable[[str, np.ndarray], "np.ndarray | None"]

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


@dataclass(frozen=True)
class CaptureFlush:
    """What one sample upload did.

    Attributes:
        sent: samples the server stored now.
        duplicates: samples it had stored before (a retry after a lost answer).
        pending: samples still queued on the device.
        expired: unsent samples deleted because they outlived ``retention_days``.
        skipped: why nothing was sent ("no consent", "not on wifi"), or None.
        error: why the upload stopped early (network), or None.
    """

    sent: int = 0
    duplicates: int = 0
    pending: int = 0
    expired: int = 0
    skipped: str | None = None
    error: str | None = None


@dataclass
class _Held:
    model: str
    version: int
    prediction_id: str
    tensor: np.ndarray
    predicted: str
    confidence: float
    captured_at: float
    policy: CapturePolicy


class SampleCapture:
    """The device's consented samples: consent, the hold, the disk queue and the upload.

    Args:
        path: the database file (``<cache>/samples.db``); opened on first use.
        http: the device's HTTP client.
        device_id: returns this install's id.
        device_class: the device's class (sent with every sample).
        seed: seed of the sampling RNG (None: random).
        redact: the PII hook, or None.
        on_wifi: returns True when uploads may use the network now (``wifi_only``).
        wall_clock: unix seconds (tests pin it).
    """

    def __init__(
        self,
        path: Path,
        http: DeviceHttp,
        device_id: Callable[[], str],
        device_class: str,
        *,
        seed: int | None = None,
        redact: Redactor | None = None,
        on_wifi: Callable[[], bool] = lambda: True,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.redact = redact
        self.on_wifi = on_wifi
        self._http = http
        self._device_id = device_id
        self._device_class = device_class
        self._rng = random.Random(seed)
        self._wall = wall_clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._hold: OrderedDict[str, _Held] = OrderedDict()
        self._consent: bool | None = None
        self._budget_day = -1  # the UTC day ``_budget_used`` counts (read from disk once)
        self._budget_used = 0
        self._evicted = 0  # held predictions evicted, not yet added to the counter on disk

    # -- storage ----------------------------------------------------------------------------

    def _exists(self) -> bool:
        return self._db is not None or self.path.exists()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise Unavailable(
                    f"cannot open the sample queue {self.path}: {exc}. Check that the cache "
                    "directory is writable and not full."
                ) from exc
            self._db = db
        return self._db

    def _persist_counts(self) -> None:
        if self._evicted:
            self._bump("evicted", self._evicted)
            self._evicted = 0

    def close(self) -> None:
        """Close the database (held samples waiting for feedback are dropped: memory only)."""
        with self._lock:
            self._hold.clear()
            if self._db is not None:
                self._persist_counts()
                self._db.close()
                self._db = None

    def _bump(self, name: str, by: int = 1) -> None:
        self._conn().execute(
            "INSERT INTO counters VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def counter(self, name: str) -> int:
        """A counter: ``dropped_budget``, ``dropped_redacted``, ``evicted``, ``expired``."""
        with self._lock:
            self._persist_counts()
            row = self._conn().execute("SELECT value FROM counters WHERE name = ?", (name,))
            found = row.fetchone()
        return int(found[0]) if found else 0

    def pending(self) -> int:
        """Samples queued on disk (sent or not yet acknowledged)."""
        with self._lock:
            if not self._exists():
                return 0
            return int(self._conn().execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def held(self) -> int:
        """Predictions held in memory waiting for feedback."""
        return len(self._hold)

    # -- consent ----------------------------------------------------------------------------

    @property
    def consent(self) -> bool:
        """Whether the user consented to sample capture (persisted; default False)."""
        if self._consent is None:
            with self._lock:
                if not self._exists():  # a device that never chose: no file is created
                    return False
                row = self._conn().execute("SELECT value FROM settings WHERE name = 'consent'")
                found = row.fetchone()
                self._consent = bool(found and found[0] == "true")
        return self._consent

    def set_consent(self, samples: bool) -> int:
        """Persist the user's choice; turning it off deletes what is held and queued.

        Returns:
            The number of queued samples deleted (0 when turning consent on).
        """
        if not isinstance(samples, bool):
            raise InvalidInput(f"consent must be True or False; got {samples!r}")
        with self._lock:
            db = self._conn()
            db.execute(
                "INSERT INTO settings VALUES ('consent', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                ("true" if samples else "false",),
            )
            self._consent = samples
            return 0 if samples else self._delete_all()

    def _delete_all(self) -> int:
        self._hold.clear()
        return int(self._conn().execute("DELETE FROM samples").rowcount)

    def forget(self) -> int:
        """Delete every held and queued sample; returns how many were queued."""
        with self._lock:
            return self._delete_all()

    def forget_pending(self) -> bool:
        """Whether a ``forget_me`` still has to reach the server."""
        with self._lock:
            if not self._exists():
                return False
            row = self._conn().execute("SELECT value FROM settings WHERE name = 'forget'")
            found = row.fetchone()
        return bool(found and found[0] == "true")

    def set_forget_pending(self, pending: bool) -> None:
        """Persist that the server's part of ``forget_me`` is (no longer) owed."""
        with self._lock:
            self._conn().execute(
                "INSERT INTO settings VALUES ('forget', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                ("true" if pending else "false",),
            )

    # -- capture (the predict path) ------------------------------------------------------------

    def tap(
        self,
        model: str,
        policy: CapturePolicy,
        profile: ReferenceProfile | None,
        layout: str | None,
    ) -> CaptureTap:
        """The per-(model, version) hook ``LocalModel`` calls after a prediction."""
        return CaptureTap(self, model, policy, _drift_check(policy, profile, layout))

    def keep(
        self,
        model: str,
        version: int,
        policy: CapturePolicy,
        prediction_id: str,
        tensor: np.ndarray,
        predicted: str,
        confidence: float,
    ) -> None:
        """Redact, then hold (feedback mode) or write one eligible, sampled prediction."""
        clean = self._redacted(model, tensor)
        if clean is None:
            return
        held = _Held(
            model, version, prediction_id, clean, predicted, confidence, self._wall(), policy
        )
        with self._lock:
            if policy.when == "feedback":
                self._hold[prediction_id] = held
                while len(self._hold) > policy.max_hold:
                    self._hold.popitem(last=False)
                    self._evicted += 1  # counted on disk at flush/close, not per call
                return
            self._write(held, None)

    def _redacted(self, model: str, tensor: np.ndarray) -> np.ndarray | None:
        copy = np.array(tensor, dtype=np.float32, copy=True)
        if self.redact is None:
            return copy
        try:
            out = self.redact(model, copy)
        except Exception as exc:  # an app's hook must never break a prediction
            logger.warning("the sample redactor failed (sample dropped): %s", exc)
            out = None
        if out is None:
            with self._lock:
                self._bump("dropped_redacted")
            return None
        result = np.asarray(out, dtype=np.float32)
        if result.shape != copy.shape or not np.isfinite(result).all():
            logger.warning("the redactor changed the shape or wrote NaN; sample dropped")
            with self._lock:
                self._bump("dropped_redacted")
            return None
        return result

    def _write(self, held: _Held, label: str | None) -> None:
        """Write a sample within the day's budget (the caller holds the lock)."""
        data = held.tensor.astype("<f4").tobytes()
        db = self._conn()
        day = int(held.captured_at // 86_400)
        if day != self._budget_day:  # once per UTC day (and per process): the disk's count
            row = db.execute("SELECT bytes FROM budget WHERE day = ?", (day,)).fetchone()
            self._budget_day, self._budget_used = day, int(row[0]) if row else 0
            db.execute("DELETE FROM budget WHERE day < ?", (day - 2,))
        if self._budget_used + len(data) > held.policy.max_bytes_per_day:
            self._bump("dropped_budget")
            return
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
                    secrets.token_hex(16),
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

    def on_feedback(self, prediction_id: str, label: str | None) -> None:
        """A label arrived: write a held sample with it, or attach it to an unsent one."""
        if label is None:  # thumbs only: no label to learn from
            with self._lock:
                self._hold.pop(prediction_id, None)
            return
        with self._lock:
            held = self._hold.pop(prediction_id, None)
            if held is not None:
                if self.consent:
                    self._write(held, label)
                return
            if not self._exists():
                return
            self._conn().execute(
                "UPDATE samples SET label = ? WHERE prediction_id = ? AND batch_id IS NULL",
                (label, prediction_id),
            )

    # -- upload -----------------------------------------------------------------------------

    def flush(self) -> CaptureFlush:
        """Send queued samples in batches (see the module); never raises on the network."""
        with self._lock:
            self._persist_counts()
        expired = self._expire()
        if not self.consent:
            return CaptureFlush(pending=self.pending(), expired=expired, skipped="no consent")
        on_wifi = bool(self.on_wifi())
        sent = duplicates = 0
        while True:
            claimed = self._claim(on_wifi)
            if claimed is None:
                break
            batch_id, rows = claimed
            body = {
                "batch_id": batch_id,
                "device_id": self._device_id(),
                "samples": [self._wire(row) for row in rows],
            }
            try:
                response = self._http.request("POST", "/v1/samples", json=body)
            except PayloadTooLarge:
                self._remove(batch_id)
                logger.warning("the server refused a sample batch as too large; dropped")
                continue
            except InvalidInput as exc:
                self._remove(batch_id)
                logger.warning("the server refused %d samples: %s", len(rows), exc)
                continue
            except PocketMLError as exc:
                return CaptureFlush(sent, duplicates, self.pending(), expired, None, str(exc))
            answer = _json(response)
            sent += int(answer.get("accepted", 0))
            duplicates += int(answer.get("duplicates", 0))
            self._remove(batch_id)  # acknowledged: the server holds them now
        skipped = None
        if not on_wifi and self._waiting_for_wifi():
            skipped = "not on wifi"
        return CaptureFlush(sent, duplicates, self.pending(), expired, skipped)

    def _expire(self) -> int:
        with self._lock:
            if not self._exists():
                return 0
            n = (
                self._conn()
                .execute(
                    "DELETE FROM samples WHERE batch_id IS NULL "
                    "AND captured_at < ? - retention_days * 86400",
                    (self._wall(),),
                )
                .rowcount
            )
            if n:
                self._bump("expired", n)
            return int(n)

    def _claim(self, on_wifi: bool) -> tuple[str, list[tuple[Any, ...]]] | None:
        """The oldest batch already claimed (a retry), else claim a new one."""
        with self._lock:
            db = self._conn()
            columns = (
                "sample_id, model, version, prediction_id, shape, data, predicted, "
                "confidence, label, captured_at"
            )
            # A batch claimed before (its send failed) goes first; one holding wifi-only
            # samples waits for Wi-Fi like any other.
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
                f"SELECT {columns} FROM samples WHERE batch_id = ?", (batch_id,)
            ).fetchall()
            return batch_id, rows

    def _remove(self, batch_id: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM samples WHERE batch_id = ?", (batch_id,))

    def _waiting_for_wifi(self) -> bool:
        with self._lock:
            return (
                self._conn()
                .execute("SELECT 1 FROM samples WHERE batch_id IS NULL AND wifi_only = 1 LIMIT 1")
                .fetchone()
                is not None
            )

    def _wire(self, row: tuple[Any, ...]) -> dict[str, Any]:
        sample_id, model, version, pid, shape, data, predicted, confidence, label, at = row
        return {
            "sample_id": sample_id,
            "model": model,
            "version": version,
            "prediction_id": pid,
            "device_class": self._device_class,
            "input": encode_tensor(tuple(json.loads(shape)), data),
            "predicted": predicted,
            "confidence": confidence,
            "label": label,
            "captured_at": at,
        }


class CaptureTap:
    """What a ``LocalModel`` snapshot calls after each prediction of one version.

    ``offer`` is the only per-prediction cost of capture: a consent flag, the ``when``
    test and one RNG draw for predictions that are not kept.
    """

    def __init__(
        self,
        capture: SampleCapture,
        model: str,
        policy: CapturePolicy,
        drifted: Callable[[Any], bool] | None,
    ) -> None:
        self.capture = capture
        self.model = model
        self.policy = policy
        self._drifted = drifted

    def offer(
        self,
        raw: Any,
        seen: np.ndarray,
        prediction_id: str,
        predicted: str,
        confidence: float,
        version: int | None,
    ) -> None:
        """Capture this prediction if consent, the policy and the sampling rate say so."""
        capture, policy = self.capture, self.policy
        if not capture.consent or version is None:
            return
        when = policy.when
        if when == "low_confidence" and confidence >= policy.low_confidence_below:
            return
        if when == "drifted" and (raw is None or self._drifted is None or not self._drifted(raw)):
            return
        if policy.rate < 1.0 and capture._rng.random() >= policy.rate:
            return
        try:
            capture.keep(self.model, version, policy, prediction_id, seen, predicted, confidence)
        except PocketMLError as exc:  # a full disk must not break predictions
            logger.warning("cannot capture a sample: %s", exc)


def _drift_check(
    policy: CapturePolicy, profile: ReferenceProfile | None, layout: str | None
) -> Callable[[Any], bool] | None:
    """``raw -> bool``: does a monitored feature fall in one of the policy's drifted bins."""
    if policy.when != "drifted" or profile is None or layout is None or not policy.drifted_bins:
        return None
    names = [b.name for b in profile.bins]
    watched = [
        (names.index(name), profile.bins[names.index(name)], frozenset(bins))
        for name, bins in policy.drifted_bins.items()
        if name in names and profile.bins[names.index(name)].kind == "numeric"
    ]
    if not watched:
        return None

    def drifted(raw: Any) -> bool:
        try:
            return _in_bins(np.asarray(raw, dtype=np.float64))
        except (ValueError, KeyError, IndexError):  # features the profile cannot read: skip
            return False

    def _in_bins(x: np.ndarray) -> bool:
        if layout == "NC":
            values = x.reshape(-1)
        else:
            if x.ndim == LAYOUT_RANK.get(layout, 0) - 1:
                x = x[np.newaxis]
            found = input_features(x, layout)
            values = np.asarray([float(found[b.name][0]) for b in profile.bins])
        return any(
            int(b.assign(values[i : i + 1])[0]) in bins for i, b, bins in watched if i < values.size
        )

    return drifted


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
