"""``POST /v1/models/{name}/predict``: cloud inference of the production version.

Answered by ``device_api.answer_predict`` (shared with the fast path, which takes the
request first whenever the server has started): this route declares it in the OpenAPI
document and adapts the request and the answer. The body is read once, parsed with
orjson, checked against the model's schema (shape, dtype, NaN -> 422 naming the expected
shape) and answered with orjson bytes.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.device_api import answer_predict, read_body
from pocketml.server.routes._body import StrictJsonRoute, respond
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_device import PredictRequest, PredictResponse

__all__ = ["router"]

router = APIRouter(tags=["inference"], route_class=StrictJsonRoute)


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
    """Run the model and answer with orjson bytes: ``answer_predict``."""
    body = await read_body(request.receive, state.max_predict_body_bytes)
    return respond(await answer_predict(state, principal, name, body))
