"""Device routes: ``POST /v1/checkin`` (manifest + ETag/304) and ``GET /v1/keys/{key_id}``.

Check-in is answered by ``device_api.answer_checkin`` (shared with the fast path, which
takes the request first whenever the server has started): this route declares it in
the OpenAPI document and adapts the request and the answer.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.device_api import answer_checkin, read_body
from pocketml.server.routes._body import StrictJsonRoute, respond
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import KeyId
from pocketml.server.schemas_device import CheckinRequest, ContentKeyPublic, ManifestPublic

__all__ = ["router"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)


@router.post(
    "/v1/checkin",
    summary="Device check-in",
    description=(
        "The device reports its facts (platform, runnable formats in preference order, "
        "runtime versions, device class, what it holds) and gets its manifest: for each "
        "model of the app the variant it should run (or null), the package to download, "
        "the download and hybrid policies, and the app's public signing keys. The answer "
        'carries `ETag: "<sha256 of the manifest JSON>"`; send it back in '
        "`If-None-Match` to get 304 Not Modified without a body. Bad facts answer 422 "
        "naming the field; an unknown device key 401."
    ),
    response_model=None,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": CheckinRequest.model_json_schema()}},
        }
    },
    responses={
        200: {"model": ManifestPublic, "description": "The manifest of this device."},
        304: {"description": "The manifest equals the one named in If-None-Match."},
        **errors(400, *ERRORS_AUTH, 422, 503),
    },
)
async def checkin(
    request: Request,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> Response:
    """Answer a check-in with the device's manifest (or 304): ``answer_checkin``."""
    body = await read_body(request.receive, state.max_device_body_bytes)
    if_none_match = request.headers.get("if-none-match")
    return respond(await answer_checkin(state, principal, body, if_none_match))


@router.get(
    "/v1/keys/{key_id}",
    response_model=ContentKeyPublic,
    summary="Fetch a content key",
    description=(
        "The AES-256-GCM key of one of the app's encrypted packages (the manifest names it "
        "in `package.content_key_id`). Keys of other apps answer 404. Never cache it: the "
        "answer carries `Cache-Control: no-store`. Encryption on a device is obfuscation: "
        "the key has to reach the device."
    ),
    responses=errors(*ERRORS_AUTH, 404),
)
async def get_key(
    response: Response,
    key_id: KeyId,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> ContentKeyPublic:
    """Return one of the app's content keys."""
    secret = await run_in_threadpool(state.registry.get_content_key, principal.app_id, key_id)
    response.headers["Cache-Control"] = "no-store"
    return ContentKeyPublic(key_id=key_id, key=base64.b64encode(secret).decode("ascii"))
