"""Device routes: ``POST /v1/checkin`` (manifest + ETag/304) and ``GET /v1/keys/{key_id}``.

Check-in turns the validated body into ``CheckinFacts`` and asks the delivery service for
the device's manifest; the response is the manifest's canonical JSON with
``ETag: "<sha256>"``, or 304 without a body when ``If-None-Match`` carries that ETag.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from pocketml.delivery import CheckinFacts
from pocketml.errors import ValidationFailed
from pocketml.registry import Principal
from pocketml.server._state import ServerState
from pocketml.server.routes._body import StrictJsonRoute, describe_errors, parse_json, read_body
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import KeyId
from pocketml.server.schemas_device import CheckinRequest, ContentKeyPublic, ManifestPublic

__all__ = ["CheckinRejected", "answer_checkin", "router"]

router = APIRouter(tags=["devices"], route_class=StrictJsonRoute)


class CheckinRejected(ValidationFailed):
    """Device facts that fail ``CheckinRequest`` (HTTP 422 naming each field)."""


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        value = candidate.strip().removeprefix("W/").strip('"')
        if value in (etag, "*"):
            return True
    return False


def _facts(body: CheckinRequest) -> CheckinFacts:
    return CheckinFacts(
        device_id=body.device_id,
        platform=body.platform,
        formats=tuple(body.formats),
        os_version=body.os_version,
        app_version=body.app_version,
        device_model=body.device_model,
        device_class=body.device_class,
        runtimes=tuple(sorted((k.lower(), v) for k, v in (body.runtimes or {}).items())),
        country=body.country,
    )


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
    """Answer a check-in with the device's manifest (or 304)."""
    raw = await read_body(request, state.max_device_body_bytes)
    status, body, etag = await answer_checkin(
        state, principal.app_id, raw, request.headers.get("if-none-match")
    )
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, no-cache"}
    if status == 304:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def answer_checkin(
    state: ServerState, app_id: str, raw: bytes, if_none_match: str | None
) -> tuple[int, bytes, str]:
    """The answer to a check-in body: (200 or 304, manifest JSON or b"", ETag value).

    Shared by the FastAPI route and the fast path (``server/_fast.py``), so both validate,
    resolve and compare ETags the same way. The manifest comes from the delivery
    service's memo when it holds one for these targeting facts (no thread hop), else
    from a catalog read in a worker thread.

    Raises:
        MalformedJson: the body is not JSON (400).
        CheckinRejected: bad facts (422, naming each field).
        Unavailable: the database cannot be reached (503).
    """
    payload = parse_json(raw)  # the one strict parser (MalformedJson: 400)
    try:
        body = CheckinRequest.model_validate(payload)
    except ValidationError as exc:
        raise CheckinRejected(describe_errors(exc)) from exc
    facts = _facts(body)
    manifest = state.delivery.cached_manifest(app_id, facts)
    if manifest is None:
        manifest = await run_in_threadpool(state.delivery.checkin, app_id, facts)
    if _matches(if_none_match, manifest.etag):
        return 304, b"", manifest.etag
    return 200, manifest.body, manifest.etag


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
