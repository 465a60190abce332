"""``POST /v1/telemetry`` (idempotent event batches) and ``POST /v1/feedback``.

Telemetry is answered by ``device_api.answer_telemetry`` (shared with the fast path,
which takes the request first whenever the server has started): this route declares it
in the OpenAPI document and adapts the request and the answer. A batch is size-checked
(count and bytes -> 413), validated as a whole (422 naming each bad event as
``events[i].field``; nothing is stored) and stored: 202 with the number accepted, or 200
``{"duplicate": true}`` when this app sent the same ``batch_id`` before. Feedback has no
fast path: FastAPI validates its body model.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.device_api import (
    BatchRejected,
    answer_telemetry,
    read_body,
    validate_batch,
    validate_body,
)
from pocketml.server.routes._body import StrictJsonRoute, respond
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.schemas_device import (
    FeedbackAccepted,
    FeedbackRequest,
    TelemetryAccepted,
    TelemetryRequest,
)
from pocketml.telemetry import Feedback

# The validators stay importable here, where their tests have always found them.
__all__ = ["BatchRejected", "router", "validate_batch", "validate_body"]

router = APIRouter(tags=["telemetry"], route_class=StrictJsonRoute)


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
        202: {"model": TelemetryAccepted, "description": "Stored (``accepted`` > 0)."},
        200: {
            "model": TelemetryAccepted,
            "description": "Nothing new stored: a duplicate of a stored batch, or every "
            "event named a model the app does not have (see ``rejected``); do not retry.",
        },
        **errors(400, *ERRORS_AUTH, 413, 422, 503),
    },
)
async def ingest_telemetry(
    request: Request,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> Response:
    """Validate and store one batch: ``answer_telemetry``."""
    body = await read_body(request.receive, state.max_telemetry_bytes)
    return respond(await answer_telemetry(state, principal, body, request.headers.get("date")))


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
