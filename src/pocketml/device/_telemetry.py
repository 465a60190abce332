"""The device's telemetry: the in-memory buffer, its writer thread, flush and feedback.

Predictions must never wait for a disk: the hot path appends one tuple to a deque
(``record``) and, every ``BUFFER_LIMIT`` events, wakes a background writer that moves the
buffer into the persistent ``TelemetryQueue`` (SQLite). ``flush`` sends the queue in
batches under their persisted batch ids (exactly once, see ``_queue``), then the queued
feedback. Nothing here knows about models or sync: ``Device`` hands in the HTTP client,
the queue and a way to read its id.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pocketml.device._net import DeviceHttp
from pocketml.device._queue import OpenWindow, TelemetryQueue
from pocketml.errors import InvalidInput, PayloadTooLarge, PocketMLError, Unavailable

__all__ = ["BUFFER_LIMIT", "MAX_BATCH", "DeviceTelemetry", "FlushReport", "error_event"]

logger = logging.getLogger(__name__)

BUFFER_LIMIT = 512  # events kept in memory before the writer moves them to SQLite
MAX_BATCH = 500  # events per POST /v1/telemetry


@dataclass(frozen=True)
class FlushReport:
    """What ``flush()`` sent.

    Attributes:
        sent: events the server acknowledged in this flush.
        duplicates: batches the server had already stored (a retry after a lost answer).
        pending: events still queued (non-zero when the flush stopped on an error).
        feedback_sent: feedback messages delivered.
        error: why the flush stopped early, or None.
        samples: what ``Device.flush`` sent of the consented samples (a
            ``CaptureFlush``), None from the telemetry part alone.
    """

    sent: int
    duplicates: int
    pending: int
    feedback_sent: int
    error: str | None = None
    samples: Any = None  # the consented samples' upload (a CaptureFlush), when any ran


def error_event(
    model: str, version: int | None, stage: str, message: str, code: str | None = None
) -> dict[str, Any]:
    """An ``error`` telemetry event (the message cut to the server's 500 characters).

    ``code`` is the failure's ``pocketml.errors`` code (``PocketMLError.code``), so the
    server can count failures by cause without reading messages.
    """
    event: dict[str, Any] = {
        "type": "error",
        "ts": time.time(),
        "model": model,
        "version": version,
        "stage": stage,
        "message": message[:500],
    }
    if code is not None:
        event["code"] = code
    return event


class DeviceTelemetry:
    """Buffers events in memory, persists them off the hot path, and sends them.

    Args:
        queue: the persistent queue (``<cache>/telemetry.db``).
        http: the device's HTTP client.
        device_id: returns this install's id (read lazily: it may touch the disk).
        context: the ``device`` object of a telemetry batch (platform, class, app version).
    """

    def __init__(
        self,
        queue: TelemetryQueue,
        http: DeviceHttp,
        device_id: Callable[[], str],
        context: Mapping[str, Any],
    ) -> None:
        self.queue = queue
        self._http = http
        self._device_id = device_id
        self._context = {k: v for k, v in context.items() if v is not None}
        # Inference tuples from the hot path; deque append/popleft are thread-safe, so the
        # writer thread drains it without swapping the object under a predicting thread.
        self._buffer: deque[tuple[Any, ...]] = deque()
        self._events: list[dict[str, Any]] = []
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._closing = False
        self._lock = threading.Lock()
        self._prefixes: dict[str, tuple[str, int | None]] = {}
        # Open sketch windows to persist with the events (set by the Device: its Sketcher).
        self.window_source: Callable[[], list[OpenWindow]] | None = None

    # -- recording (any thread) -------------------------------------------------------------

    def record(self, inference: tuple[Any, ...]) -> None:
        """Buffer one inference tuple (``INFERENCE_FIELDS`` order); never touches the disk."""
        buffer = self._buffer
        buffer.append(inference)
        if len(buffer) >= BUFFER_LIMIT:
            self._wake_writer()

    def emit(self, event: dict[str, Any]) -> None:
        """Buffer one non-inference event (error, download)."""
        self._events.append(event)
        if len(self._events) + len(self._buffer) >= BUFFER_LIMIT:
            self._wake_writer()

    def emit_error(
        self, model: str, version: int | None, stage: str, message: str, code: str | None = None
    ) -> None:
        """Buffer an ``error`` event."""
        self.emit(error_event(model, version, stage, message, code))

    def register_prefix(self, prefix: str, model: str, version: int | None) -> None:
        """Remember that prediction ids starting with ``prefix`` are ``model`` ``version``."""
        self._prefixes[prefix] = (model, version)

    # -- persisting -------------------------------------------------------------------------

    def persist(self) -> None:
        """Move buffered events (inference tuples, other dicts) into the SQLite queue,
        with the open sketch windows that changed, in one transaction."""
        with self._lock:
            popleft = self._buffer.popleft
            inferences = [popleft() for _ in range(len(self._buffer))]
            others, self._events = self._events, []
            windows = self.window_source() if self.window_source is not None else []
            if inferences or others or windows:
                self.queue.append(others, inferences, windows)

    def _wake_writer(self) -> None:
        """Ask the background writer to persist the buffer (the hot path never writes)."""
        if self._writer is None:
            with self._lock:
                if self._writer is None and not self._closing:
                    self._writer = threading.Thread(
                        target=self._write_loop, name="pocketml-telemetry", daemon=True
                    )
                    self._writer.start()
        self._wake.set()

    def _write_loop(self) -> None:
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            try:
                self.persist()
            except PocketMLError as exc:  # a full disk must not kill predictions
                logger.warning("cannot persist telemetry: %s", exc)

    # -- sending ----------------------------------------------------------------------------

    def flush(self) -> FlushReport:
        """Send queued telemetry (batches of at most ``MAX_BATCH`` events), then feedback.

        Returns:
            A FlushReport; a network failure stops the flush (``error``), never raises.
        """
        self.persist()
        sent = duplicates = feedback_sent = 0
        limit = MAX_BATCH
        error: str | None = None
        while True:
            batch = self.queue.claim_batch(limit)
            if batch is None:
                break
            body = {
                "batch_id": batch.batch_id,
                "device_id": self._device_id(),
                "device": self._context,
                "events": batch.events,
            }
            try:
                # Date: the device clock at sending, so the server can correct the
                # events' timestamps when this clock is off (docs/protocol.md, Clock skew).
                date = {"Date": email.utils.formatdate(usegmt=True)}
                response = self._http.request("POST", "/v1/telemetry", json=body, headers=date)
            except PayloadTooLarge:
                if len(batch.events) == 1:  # a single event too large for the server
                    self.queue.reject(batch.batch_id)
                else:  # refused unseen: split it under a new batch id
                    self.queue.release(batch.batch_id)
                    limit = max(1, len(batch.events) // 2)
                continue
            except InvalidInput as exc:
                lost = self.queue.reject(batch.batch_id)
                logger.warning("the server refused %d telemetry events: %s", lost, exc)
                continue
            except PocketMLError as exc:
                error = str(exc)
                break
            self.queue.acknowledge(batch.batch_id)
            if _is_duplicate(response):
                duplicates += 1
            sent += len(batch.events)
        if error is None:
            feedback_sent, error = self._send_feedback()
        return FlushReport(sent, duplicates, self.queue.pending(), feedback_sent, error)

    def _send_feedback(self) -> tuple[int, str | None]:
        count = 0
        for row_id, body in self.queue.feedback():
            try:
                self._http.request("POST", "/v1/feedback", json=body)
            except Unavailable as exc:
                return count, str(exc)
            except PocketMLError as exc:  # refused for good: do not retry forever
                logger.warning("the server refused feedback %s: %s", body["prediction_id"], exc)
            self.queue.remove_feedback(row_id)
            count += 1
        return count, None

    def feedback(
        self,
        prediction_id: str,
        label: str | None,
        thumbs: Literal["up", "down"] | None,
        model: str | None,
        version: int | None,
    ) -> Literal["sent", "queued"]:
        """Send (or queue, when offline) feedback; see ``Device.feedback``."""
        if (label is None) == (thumbs is None):
            raise InvalidInput("pass exactly one of label=... or thumbs='up'|'down'")
        if thumbs is not None and thumbs not in ("up", "down"):
            raise InvalidInput(f"thumbs must be 'up' or 'down'; got {thumbs!r}")
        if model is None:
            known = next(
                (v for p, v in self._prefixes.items() if prediction_id.startswith(p)), None
            )
            if known is None:
                raise InvalidInput(
                    f"prediction id {prediction_id!r} was not made by this Device object; "
                    "pass model=... (and version=...)"
                )
            model, version = known[0], known[1] if version is None else version
        body = {
            "prediction_id": prediction_id,
            "device_id": self._device_id(),
            "model": model,
            "version": version,
            "label": label,
            "thumbs": thumbs,
            "ts": time.time(),
        }
        try:
            self._http.request("POST", "/v1/feedback", json=body)
        except Unavailable:
            self.queue.add_feedback(body)
            return "queued"
        return "sent"

    def forget(self) -> tuple[int, int]:
        """Drop buffered events and delete the queued ones and queued feedback.

        Returns:
            (events deleted from the buffer and the queue, feedback messages deleted).
        """
        with self._lock:
            buffered = len(self._buffer) + len(self._events)
            self._buffer.clear()
            self._events = []
        events, feedback = self.queue.clear()
        return buffered + events, feedback

    def close(self) -> None:
        """Stop the writer, persist what is buffered and close the queue."""
        self._closing = True
        writer, self._writer = self._writer, None
        if writer is not None:
            self._wake.set()
            writer.join(timeout=10)
        self._closing = False
        self.persist()
        self.queue.close()


def _is_duplicate(response: Any) -> bool:
    try:
        return bool(response.json().get("duplicate"))
    except (ValueError, AttributeError):
        return False
