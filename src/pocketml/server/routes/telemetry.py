"""``POST /v1/telemetry`` (idempotent event batches) and ``POST /v1/feedback``.

A batch is size-checked (count and bytes -> 413), validated as a whole (422 naming each
bad event as ``events[i].field``; nothing is stored) and handed to the telemetry
service: 202 with the number accepted, or 200 ``{"duplicate": true}`` when this app sent
the same ``batch_id`` before.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from pocketml.errors import PayloadTooLarge, ValidationFailed
from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.routes._body import StrictJsonRoute, describe_errors, parse_json, read_body
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._telemetry_check import batch_of, decode_batch
from pocketml.server.schemas_device import (
    FeedbackAccepted,
    FeedbackRequest,
    TelemetryAccepted,
    TelemetryRequest,
)
from pocketml.telemetry import Feedback, TelemetryBatch

__all__ = ["BatchRejected", "router", "validate_batch", "validate_body"]

router = APIRouter(tags=["telemetry"], route_class=StrictJsonRoute)

_EVENT_TAGS = frozenset({"inference", "error", "download"})


class BatchRejected(ValidationFailed):
    """A telemetry batch with bad fields (HTTP 422 naming each ``events[i].field``)."""


def validate_batch(payload: Any, max_events: int) -> TelemetryBatch:
    """Check a parsed telemetry body against ``TelemetryRequest``; return its batch.

    This is the slow path, for what ``decode_batch`` did not accept as certainly valid:
    pydantic validates (coercing what its lax mode coerces) and writes the error message.

    Args:
        payload: the parsed JSON body (its events may be normalized in place).
        max_events: the server's ``max_telemetry_events``.

    Returns:
        The validated ``TelemetryBatch``.

    Raises:
        PayloadTooLarge: more than ``max_events`` events.
        BatchRejected: any bad field; the message names each one.
    """
    events = payload.get("events") if isinstance(payload, dict) else None
    if isinstance(events, list) and len(events) > max_events:
        raise PayloadTooLarge(
            f"a batch may hold at most {max_events} events; got "
            f"{len(events)}. Split it into smaller batches (each with its own batch_id)."
        )
    try:
        body = TelemetryRequest.model_validate(payload)
    except ValidationError as exc:
        raise BatchRejected(describe_errors(exc, _EVENT_TAGS)) from exc
    return batch_of(body)


def validate_body(body: bytes, max_events: int) -> TelemetryBatch:
    """Parse and check a raw telemetry body; return its batch.

    Certainly-valid bodies are decoded and checked in one pass (``decode_batch``);
    anything else is parsed and goes through ``validate_batch``, whose pydantic
    fallback writes the error messages.

    Args:
        body: the request body.
        max_events: the server's ``max_telemetry_events``.

    Returns:
        The validated ``TelemetryBatch``.

    Raises:
        MalformedJson: the body is not JSON.
        PayloadTooLarge: more than ``max_events`` events.
        BatchRejected: any bad field; the message names each one.
    """
    batch = decode_batch(body)
    if batch is None:
        return validate_batch(parse_json(body), max_events)
    if len(batch.events) > max_events:
        raise PayloadTooLarge(
            f"a batch may hold at most {max_events} events; got "
            f"{len(batch.events)}. Split it into smaller batches (each with its own batch_id)."
        )
    return batch


@router.post(
    "/v1/telemetry",
    status_code=202,
    summary="Send a telemetry batch",
    description=(
        "A batch of inference, error and download events. Idempotent per `batch_id`: a "
        'retried batch answers 200 `{"accepted": 0, "duplicate": true}` and is stored '
        "once. Any bad event rejects the whole batch with 422 naming `events[i].field`. "
        "More events than the server's `max_telemetry_events`, or a body over its byte "
        "limit, answers 413: split the batch."
    ),
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TelemetryRequest.model_json_schema()}},
        }
    },
    responses={
        202: {"model": TelemetryAccepted, "description": "Stored."},
        200: {"model": TelemetryAccepted, "description": "A duplicate; nothing stored."},
        **errors(400, *ERRORS_AUTH, 413, 422, 503),
    },
)
async def ingest_telemetry(
    request: Request,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> Response:
    """Validate and store one batch."""
    body = await read_body(request, state.max_telemetry_bytes)
    batch = validate_body(body, state.max_telemetry_events)
    result = await run_in_threadpool(state.telemetry.ingest, principal.app_id, batch)
    return Response(
        orjson.dumps({"accepted": result.accepted, "duplicate": result.duplicate}),
        status_code=200 if result.duplicate else 202,
        media_type="application/json",
    )


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    summary="Send feedback on a prediction",
    description=(
        "A correct label or a thumbs up/down (exactly one) for a prediction id the app "
        "logged in an inference event. Idempotent per prediction id: the feedback with "
        "the newest `ts` wins. Accuracy in the model metrics joins label feedback with "
        "inference events on the prediction id."
    ),
    responses=errors(400, *ERRORS_AUTH, 422, 503),
)
async def feedback(
    body: FeedbackRequest,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> FeedbackAccepted:
    """Store one feedback."""
    record = Feedback(
        prediction_id=body.prediction_id,
        device_id=body.device_id,
        model=body.model,
        ts=body.ts,
        version=body.version,
        label=body.label,
        thumbs=body.thumbs,
    )
    await run_in_threadpool(state.telemetry.record_feedback, principal.app_id, record)
    return FeedbackAccepted(accepted=True)
