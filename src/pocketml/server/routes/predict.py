"""``POST /v1/models/{name}/predict``: cloud inference of the production version.

The hot path skips FastAPI's body model: the body is read once, parsed with orjson,
checked against the model's schema by the serving service (shape, dtype, NaN -> 422
naming the expected shape) and answered with orjson bytes.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from pocketml.bounds import check_text
from pocketml.errors import InvalidInput, ValidationFailed
from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.routes._body import MalformedJson, StrictJsonRoute, read_json
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_device import ID_PATTERN, PredictRequest, PredictResponse

__all__ = ["parse_predict_body", "router"]

router = APIRouter(tags=["inference"], route_class=StrictJsonRoute)

_ALLOWED = frozenset({"inputs", "device_id", "prediction_id"})
_ID = re.compile(ID_PATTERN.removesuffix("$") + r"\Z")


def parse_predict_body(payload: Any) -> tuple[Any, str | None]:
    """The inputs and prediction id of a parsed predict body.

    Raises:
        InvalidInput: not an object, unknown fields, no list ``inputs``, or a bad
            ``prediction_id`` / ``device_id``.
    """
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"the body must be a JSON object with 'inputs'; got {type(payload).__name__}."
        )
    extra = set(payload) - _ALLOWED
    if extra:
        raise InvalidInput(
            f"unknown field(s) {sorted(extra)}; a predict body has inputs, device_id and "
            "prediction_id."
        )
    if "inputs" not in payload or not isinstance(payload["inputs"], list):
        raise InvalidInput("field 'inputs' is required: a nested list (one sample or a batch).")
    prediction_id = payload.get("prediction_id")
    if prediction_id is not None and (
        not isinstance(prediction_id, str)
        or len(prediction_id) > 128
        or not _is_storable(prediction_id)
    ):
        raise InvalidInput(
            "field 'prediction_id' must be a string of at most 128 characters without NUL "
            "characters or lone surrogates."
        )
    device_id = payload.get("device_id")
    if device_id is not None and (not isinstance(device_id, str) or not _ID.match(device_id)):
        raise InvalidInput(
            f"field 'device_id' must match {ID_PATTERN} (8-128 letters, digits, _ . : -)."
        )
    return payload["inputs"], prediction_id


def _is_storable(text: str) -> bool:
    try:
        check_text(text)
    except ValueError:
        return False
    return True


@router.post(
    "/v1/models/{name}/predict",
    summary="Cloud inference",
    description=(
        "Runs the production version of the model (its `role=cloud` variant, else its "
        "first runnable device variant) on one sample or a batch, already normalized "
        "like the on-device model's input. Concurrent requests are micro-batched. Wrong "
        "shape, dtype, NaN or infinity -> 422 naming the expected shape; unknown model or "
        "no production version -> 404; more than the server's row limit -> 413."
    ),
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": PredictRequest.model_json_schema(),
                    "example": {"inputs": [[0.0] * 64], "prediction_id": "p-0001"},
                }
            },
        }
    },
    responses={
        200: {"model": PredictResponse, "description": "One prediction per sample."},
        **errors(400, *ERRORS_AUTH, 404, 413, 422, 503),
    },
)
async def predict(
    request: Request,
    name: ModelName,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> Response:
    """Run the model and answer with orjson bytes."""
    try:
        inputs, prediction_id = parse_predict_body(
            await read_json(request, state.max_predict_body_bytes)
        )
        body = await state.serving.predict(principal.app_id, name, inputs, prediction_id)
    except MalformedJson:
        raise
    except InvalidInput as exc:  # the schema check: a 422 (a bare InvalidInput is a 400)
        raise ValidationFailed.of(exc) from exc
    return Response(body, media_type="application/json")
