"""What intake does to a batch before it is stored: unknown models out, clocks corrected.

Device clocks are wrong: hours off, or back at 1970 after a battery pull. Aggregates,
guardrails and experiments select events by ``ts``, so a skewed batch would land in the
wrong window (or nowhere). The rules (``correct_clock``):

1. Offset. A device may send its clock's time with the batch (the HTTP ``Date`` header,
   RFC 9110 section 6.6.1). ``offset = received - device_sent_at``; when its magnitude
   exceeds ``skew_threshold_s`` (60 s: well above network delay and the header's 1 s
   resolution) every event stamped by that clock is shifted by it. An event stamped
   *after* the device's send time (beyond the header's resolution) cannot come from the
   clock that sent the batch — it was stamped before the clock was reset — and is not
   shifted. Without a send time nothing is shifted.
2. Clamp. An event still in the future of the receive time is set to the receive time.
3. Stale. An event older than ``stale_after_s`` before the receive time is kept (an
   offline device may send its backlog) and counted, so the device and the log say so.

The offset applied is stored with each chunk (``clock_offset_s``): the device's own ts of
an event is ``ts - clock_offset_s`` unless the event was clamped. Events are corrected
in place (the batch is the request's own), and only when a correction is needed: the
usual batch costs one pass over its timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pocketml.telemetry._types import IngestResult

__all__ = ["ClockCorrection", "ClockPolicy", "IngestReport", "RejectedModel", "correct_clock"]

HEADER_RESOLUTION_S = 1.0  # an HTTP date has whole seconds


@dataclass(frozen=True)
class ClockPolicy:
    """How intake corrects event timestamps.

    Args:
        skew_threshold_s: a device clock further off than this (by its send time) is
            corrected; closer ones are trusted.
        stale_after_s: events older than this before the receive time are counted as
            stale (kept all the same).
    """

    skew_threshold_s: float = 60.0
    stale_after_s: float = 30 * 86_400.0


@dataclass(frozen=True)
class ClockCorrection:
    """What ``correct_clock`` did: the offset added, events clamped, stale events."""

    offset_s: float = 0.0
    clamped: int = 0
    stale: int = 0


@dataclass(frozen=True)
class RejectedModel:
    """Events of a batch not stored because the app has no model of that name."""

    model: str
    events: int
    code: str = "not_found"


@dataclass(frozen=True)
class IngestReport(IngestResult):
    """What intake did with a batch, with what a device should know.

    ``accepted`` and ``duplicate`` as in ``IngestResult``; ``rejected``: per unknown
    model, the events not stored; ``clock_offset_s``: seconds added to the device's
    timestamps (0 when its clock was trusted); ``clamped``: events moved back from the
    future to the receive time; ``stale``: stored events older than the stale horizon.
    A route answers 202 when ``accepted`` > 0, else 200 (a duplicate, or every event
    named an unknown model: the device drops the batch, a retry would get the same).
    """

    rejected: tuple[RejectedModel, ...] = ()
    clock_offset_s: float = 0.0
    clamped: int = 0
    stale: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the answer (``TelemetryAccepted``)."""
        return asdict(self)


def _timestamps(events: Sequence[Any], is_mapping: bool) -> list[float]:
    if is_mapping:
        return [event["ts"] for event in events]
    return [event.ts for event in events]


def correct_clock(
    events: Sequence[Any],
    received: float,
    device_sent_at: float | None,
    policy: ClockPolicy,
) -> ClockCorrection:
    """Correct the events' ``ts`` in place by the rules of this module.

    Args:
        events: validated events (mappings, or objects with a settable ``ts``).
        received: the server's receive time (unix seconds).
        device_sent_at: the device clock's time when it sent the batch (unix seconds),
            or None when the device did not say.
        policy: the thresholds.

    Returns:
        The offset applied and the counts of clamped and stale events.
    """
    if not events:
        return ClockCorrection()
    offset = 0.0
    if device_sent_at is not None and abs(received - device_sent_at) > policy.skew_threshold_s:
        offset = received - device_sent_at
    is_mapping = isinstance(events[0], Mapping)
    stamps = _timestamps(events, is_mapping)
    horizon = received - policy.stale_after_s
    if offset == 0.0 and max(stamps) <= received and min(stamps) >= horizon:
        return ClockCorrection()  # the usual batch: nothing to change
    same_clock = (device_sent_at if device_sent_at is not None else 0.0) + HEADER_RESOLUTION_S
    clamped = stale = 0
    for index, stamp in enumerate(stamps):
        ts = stamp + offset if offset and stamp <= same_clock else stamp
        if ts > received:
            ts = received
            clamped += 1
        elif ts < horizon:
            ts = max(ts, 0.0)
            stale += 1
        if ts != stamp:
            if is_mapping:
                events[index]["ts"] = ts
            else:
                events[index].ts = ts
    return ClockCorrection(offset_s=offset, clamped=clamped, stale=stale)
