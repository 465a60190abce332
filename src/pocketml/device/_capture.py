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

import hashlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device._capture_queue import HeldSample, SampleQueue
from pocketml.device._capture_tap import CaptureTap, drift_check
from pocketml.device._net import DeviceHttp
from pocketml.errors import InvalidInput, PayloadTooLarge, PocketMLError
from pocketml.protocol import CapturePolicy, encode_tensor
from pocketml.sketch import ReferenceProfile

__all__ = ["CaptureFlush", "CaptureTap", "Redactor", "SampleCapture"]

logger = logging.getLogger(__name__)

Redactor = Callable[[str, np.ndarray], "np.ndarray | None"]


@dataclass(frozen=True)
class CaptureFlush:
    """What one sample upload did.

    Attributes:
        sent: samples the server stored now.
        duplicates: samples it had stored before (a retry after a lost answer).
        pending: samples still queued on the device.
        expired: unsent samples deleted because they outlived ``retention_days``.
        skipped: why nothing was sent ("no consent", "forget pending", "not on wifi"), or None.
        error: why the upload stopped early (network), or None.
    """

    sent: int = 0
    duplicates: int = 0
    pending: int = 0
    expired: int = 0
    skipped: str | None = None
    error: str | None = None


class SampleCapture:
    """The device's consented samples: consent, the hold, the PII hook and the upload.

    Args:
        path: the database file (``<cache>/samples.db``); created on first need.
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
        # Sample ids: random, or drawn from their own seeded RNG in a simulation, so a
        # seeded fleet sends the same ids every run (the server's caps and gate split hash them).
        # (mixed with the device id: two devices with one seed must not collide)
        ids = random.Random(f"sample-ids-{seed}") if seed is not None else None
        self.queue = SampleQueue(
            path,
            new_id=(
                lambda: hashlib.sha256(
                    f"{device_id()}:{ids.getrandbits(128)}".encode()
                ).hexdigest()[:32]
            )
            if ids is not None
            else None,
        )
        self.redact = redact
        self.on_wifi = on_wifi
        self.rng = random.Random(seed)  # sampling draws (CaptureTap)
        self._http = http
        self._device_id = device_id
        self._device_class = device_class
        self._wall = wall_clock
        self._lock = self.queue.lock
        self._hold: OrderedDict[str, HeldSample] = OrderedDict()
        self._consent: bool | None = None
        self._forgetting: bool | None = None  # a forget_me is owed to the server (cached)
        self._evicted = 0  # held predictions evicted, not yet added to the counter on disk

    def _persist_counts(self) -> None:
        if self._evicted:
            self.queue.bump("evicted", self._evicted)
            self._evicted = 0

    def close(self) -> None:
        """Close the queue (held samples waiting for feedback are dropped: memory only)."""
        with self._lock:
            self._hold.clear()
            if self.queue.exists():
                self._persist_counts()
            self.queue.close()

    def counter(self, name: str) -> int:
        """A counter: ``dropped_budget``, ``dropped_redacted``, ``evicted``, ``expired``."""
        with self._lock:
            if self._evicted:
                self._persist_counts()
            return self.queue.counter(name)

    def pending(self) -> int:
        """Samples queued on disk (sent or not yet acknowledged)."""
        return self.queue.pending()

    def held(self) -> int:
        """Predictions held in memory waiting for feedback."""
        return len(self._hold)

    # -- consent ----------------------------------------------------------------------------

    @property
    def consent(self) -> bool:
        """Whether the user consented to sample capture (persisted; default False)."""
        if self._consent is None:
            self._consent = self.queue.setting("consent") == "true"
        return self._consent

    def set_consent(self, samples: bool) -> int:
        """Persist the user's choice; turning it off deletes what is held and queued.

        Returns:
            The number of queued samples deleted (0 when turning consent on).
        """
        if not isinstance(samples, bool):
            raise InvalidInput(f"consent must be True or False; got {samples!r}")
        with self._lock:
            self.queue.set_setting("consent", "true" if samples else "false")
            self._consent = samples
            return 0 if samples else self.forget()

    def forget(self) -> int:
        """Delete every held and queued sample; returns how many were queued."""
        with self._lock:
            self._hold.clear()
            return self.queue.clear()

    def forget_pending(self) -> bool:
        """Whether a ``forget_me`` still has to reach the server.

        While it is owed nothing is captured, held or uploaded: a sample taken meanwhile
        would reach the server right after the DELETE and outlive the user's request.
        """
        if self._forgetting is None:
            self._forgetting = self.queue.setting("forget") == "true"
        return self._forgetting

    def set_forget_pending(self, pending: bool) -> None:
        """Persist that the server's part of ``forget_me`` is (no longer) owed."""
        with self._lock:
            self.queue.set_setting("forget", "true" if pending else "false")
            self._forgetting = pending
            if pending:
                self._hold.clear()

    # -- capture (the predict path) ------------------------------------------------------------

    def tap(
        self,
        model: str,
        policy: CapturePolicy,
        profile: ReferenceProfile | None,
        layout: str | None,
    ) -> CaptureTap:
        """The per-model hook ``LocalModel`` calls after a prediction."""
        return CaptureTap(self, model, policy, drift_check(policy, profile, layout))

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
        held = HeldSample(
            model, version, prediction_id, clean, predicted, confidence, self._wall(), policy
        )
        with self._lock:
            if policy.when == "feedback":
                self._hold[prediction_id] = held
                while len(self._hold) > policy.max_hold:
                    self._hold.popitem(last=False)
                    self._evicted += 1  # counted on disk at flush/close, not per call
                return
            self.queue.write(held, None)

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
            self.queue.bump("dropped_redacted")
            return None
        result = np.asarray(out, dtype=np.float32)
        if result.shape != copy.shape or not np.isfinite(result).all():
            logger.warning("the redactor changed the shape or wrote NaN; sample dropped")
            self.queue.bump("dropped_redacted")
            return None
        return result

    def on_feedback(self, prediction_id: str, label: str | None) -> None:
        """A label arrived: write a held sample with it, or attach it to an unsent one."""
        with self._lock:
            held = self._hold.pop(prediction_id, None)
            if label is None:  # thumbs only: no label to learn from
                return
            if held is not None:
                if self.consent and not self.forget_pending():
                    self.queue.write(held, label)
                return
            self.queue.attach_label(prediction_id, label)

    # -- upload -----------------------------------------------------------------------------

    def flush(self) -> CaptureFlush:
        """Send queued samples in batches (see the module); never raises on the network."""
        with self._lock:
            if self._evicted:
                self._persist_counts()
        expired = self.queue.expire(self._wall())
        if not self.consent:
            return CaptureFlush(pending=self.pending(), expired=expired, skipped="no consent")
        if self.forget_pending():  # the DELETE did not get through: upload nothing yet
            return CaptureFlush(pending=self.pending(), expired=expired, skipped="forget pending")
        on_wifi = bool(self.on_wifi())
        sent = duplicates = 0
        while (claimed := self.queue.claim(on_wifi)) is not None:
            batch_id, rows = claimed
            body = {
                "batch_id": batch_id,
                "device_id": self._device_id(),
                "samples": [self._wire(row) for row in rows],
            }
            try:
                response = self._http.request("POST", "/v1/samples", json=body)
            except PayloadTooLarge:
                self.queue.remove(batch_id)
                logger.warning("the server refused a sample batch as too large; dropped")
                continue
            except InvalidInput as exc:
                self.queue.remove(batch_id)
                logger.warning("the server refused %d samples: %s", len(rows), exc)
                continue
            except PocketMLError as exc:
                return CaptureFlush(sent, duplicates, self.pending(), expired, None, str(exc))
            answer = _json(response)
            sent += int(answer.get("accepted", 0))
            duplicates += int(answer.get("duplicates", 0))
            self.queue.remove(batch_id)  # acknowledged: the server holds them now
        skipped = "not on wifi" if not on_wifi and self.queue.waiting_for_wifi() else None
        return CaptureFlush(sent, duplicates, self.pending(), expired, skipped)

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


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
