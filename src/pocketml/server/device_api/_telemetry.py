"""Telemetry intake: an event batch in, stored once per ``batch_id``.

A batch is size-checked (count -> 413), validated as a whole (422 naming each bad event
as ``events[i].field``; nothing is stored) and handed to the telemetry service with the
device clock's send time (the HTTP ``Date`` request header, when the device sends one:
the service corrects skewed event timestamps by it). The answer is 202 when events were
stored, else 200 (``duplicate: true`` when this app sent the same ``batch_id`` before, or
every event named a model the app does not have); ``rejected`` lists the events left
out per model. ``profile`` events are checked against their version's reference profile
(``pocketml.monitor.ProfileIntake``; a bad one is a 422 and nothing is stored) and merged
into the sketch store inside the batch's transaction. Certainly-valid bodies are decoded
and checked in one msgspec pass (``decode_batch``); anything else goes through pydantic,
which writes the messages.
"""

from __future__ import annotations

import email.utils
import functools
from typing import Any

import orjson
from anyio import to_thread
from pydantic import ValidationError

from pocketml.errors import PayloadTooLarge, ValidationFailed
from pocketml.monitor import has_profile_events
from pocketml.protocol import EVENT_KINDS
from pocketml.registry import Principal
from pocketml.server._json import describe_errors, parse_json
from pocketml.server._state import ServerState
from pocketml.server.device_api._answer import Answer
from pocketml.server.device_api._telemetry_check import batch_of, decode_batch
from pocketml.server.schemas_device import TelemetryRequest
from pocketml.telemetry import TelemetryBatch

__all__ = ["BatchRejected", "answer_telemetry", "validate_batch", "validate_body"]

_EVENT_TAGS = frozenset(EVENT_KINDS)  # pydantic puts the tag in every error location


class BatchRejected(ValidationFailed):
    """A telemetry batch with bad fields (HTTP 422 naming each ``events[i].field``)."""


async def answer_telemetry(
    state: ServerState, principal: Principal, body: bytes, sent_date: str | None = None
) -> Answer:
    """Validate and store one batch: 202 stored, 200 nothing new stored.

    Args:
        state: the server state.
        principal: the authenticated device key's principal.
        body: the request body (JSON ``TelemetryRequest``).
        sent_date: the request's ``Date`` header, if any (an unreadable one is ignored).

    Raises:
        MalformedJson: the body is not JSON (400).
        PayloadTooLarge: more than ``max_telemetry_events`` events (413).
        BatchRejected: any bad field (422).
    """
    batch = validate_body(body, state.max_telemetry_events)
    sent_at = _http_date(sent_date)
    hook = None
    if state.profiles is not None and has_profile_events(batch.events):
        hook = await to_thread.run_sync(
            state.profiles.prepare,
            principal.app_id,
            batch.device_id,
            batch.events,
            batch.device_class,
            batch.app_version,
        )
    result = await to_thread.run_sync(
        functools.partial(state.telemetry.ingest, device_sent_at=sent_at, on_commit_rows=hook),
        principal.app_id,
        batch,
    )
    stored = result.accepted > 0 and not result.duplicate
    body = orjson.dumps(result.to_dict())
    return Answer(202, body, events=result.accepted) if stored else Answer(200, body)


def _http_date(value: str | None) -> float | None:
    """Unix seconds of an HTTP-date (RFC 9110), or None when absent or unreadable."""
    if not value or len(value) > 64:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def validate_body(body: bytes, max_events: int) -> TelemetryBatch:
    """Parse and check a raw telemetry body; return its batch.

    Args:
        body: the request body.
        max_events: the server's ``max_telemetry_events``.

    Raises:
        MalformedJson: the body is not JSON.
        PayloadTooLarge: more than ``max_events`` events.
        BatchRejected: any bad field; the message names each one.
    """
    batch = decode_batch(body)
    if batch is None:
        return validate_batch(parse_json(body), max_events)
    _check_count(len(batch.events), max_events)
    return batch


def validate_batch(payload: Any, max_events: int) -> TelemetryBatch:
    """Check a parsed telemetry body against ``TelemetryRequest``; return its batch.

    This is the slow path, for what ``decode_batch`` did not accept as certainly valid:
    pydantic validates (coercing what its lax mode coerces) and writes the error message.

    Args:
        payload: the parsed JSON body (its events may be normalized in place).
        max_events: the server's ``max_telemetry_events``.

    Raises:
        PayloadTooLarge: more than ``max_events`` events.
        BatchRejected: any bad field; the message names each one.
    """
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, list):
        _check_count(len(events), max_events)
    try:
        request = TelemetryRequest.model_validate(payload)
    except ValidationError as exc:
        raise BatchRejected(describe_errors(exc, _EVENT_TAGS)) from exc
    return batch_of(request)


def _check_count(count: int, max_events: int) -> None:
    if count > max_events:
        raise PayloadTooLarge(
            f"a batch may hold at most {max_events} events; got {count}. Split it into "
            "smaller batches (each with its own batch_id)."
        )
