"""Federated learning routes: operators' tasks and devices' participation.

Operators (admin token; the app is the token's):

- ``POST /v1/admin/federated/tasks`` — start a task (201), round 1 opens at once;
- ``GET /v1/admin/federated/tasks`` — the app's tasks, newest first;
- ``GET /v1/admin/federated/tasks/{task_id}`` — one task with its rounds, ε, result;
- ``POST /v1/admin/federated/tasks/{task_id}/cancel``.

Devices (device key; docs/federated-protocol.md): join, the signed round document, the
update upload (``application/octet-stream``), the SecAgg+ state and messages, leave. The
request guard has refused a body over ``max_device_body_kb`` before any byte was read.
Thin: parse, call one ``FederatedService`` method (in a worker thread), map the result.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from pocketml.errors import UnsupportedMediaType
from pocketml.protocol import (
    DEVICE_ID_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    ROUND_SIGNATURE_HEADER,
    ROUND_SIGNATURE_KEY_HEADER,
    TASK_ID_PATTERN,
    UPLOAD_CLIPPED_PARAM,
)
from pocketml.registry import Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.device_api import read_body
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_federated import (
    JoinPublic,
    JoinRequest,
    LeaveRequest,
    SecAggKeysRequest,
    SecAggSharesRequest,
    SecAggStatePublic,
    SecAggUnmaskRequest,
    TaskCreate,
    TaskList,
    TaskPublic,
    UploadPublic,
)

__all__ = ["router"]

router = APIRouter(tags=["federated"], route_class=StrictJsonRoute)

_TaskId = Annotated[str, Path(pattern=TASK_ID_PATTERN, description="The task's id.")]
_Round = Annotated[int, Path(ge=1, le=2**31 - 1, description="The round number.")]
_DeviceId = Annotated[str, Query(pattern=DEVICE_ID_PATTERN, description="The device's id.")]
_DEVICE_ERRORS = (400, *ERRORS_AUTH, 404, 409, 413, 422, 503)
_OCTETS = "application/octet-stream"


def _actor(principal: Principal) -> str:
    return f"admin:{principal.app_id}"


def _task(info: Any) -> TaskPublic:
    return TaskPublic.model_validate(info.to_dict())


# ---------------------------------------------------------------- operators


@router.post(
    "/v1/admin/federated/tasks",
    status_code=201,
    response_model=TaskPublic,
    summary="Start a federated task",
    description=(
        "Trains the classifier head of a federatable version on devices (docs/federated.md, "
        "Tasks). Round 1 opens at once and is announced to targeted devices at check-in. "
        "A setting out of bounds or a version that is not federatable answers 400 naming "
        "it; a model with a running task 409."
    ),
    responses=errors(400, *ERRORS_AUTH, 404, 409, 422, 503),
)
async def create_task(
    body: TaskCreate,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TaskPublic:
    """Start a task."""
    service = state.federated_service
    info = await run_in_threadpool(
        lambda: service.create_task(
            principal.app_id, body.model, body.spec(), actor=_actor(principal)
        )
    )
    return _task(info)


@router.get(
    "/v1/admin/federated/tasks",
    response_model=TaskList,
    summary="List federated tasks",
    responses=errors(*ERRORS_AUTH, 422, 503),
)
async def list_tasks(
    model: ModelName | None = Query(None, description="Only this model's tasks."),
    limit: int = Query(50, ge=1, le=500),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TaskList:
    """The app's tasks, newest first."""
    service = state.federated_service
    items = await run_in_threadpool(
        lambda: service.list_tasks(principal.app_id, model, limit=limit)
    )
    return TaskList(items=[_task(i) for i in items])


@router.get(
    "/v1/admin/federated/tasks/{task_id}",
    response_model=TaskPublic,
    summary="A federated task with its rounds",
    responses=errors(*ERRORS_AUTH, 404, 422, 503),
)
async def get_task(
    task_id: _TaskId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TaskPublic:
    """One task, its rounds (reports, ε, dropouts), its result version."""
    service = state.federated_service
    return _task(await run_in_threadpool(service.get_task, principal.app_id, task_id))


@router.post(
    "/v1/admin/federated/tasks/{task_id}/cancel",
    response_model=TaskPublic,
    summary="Cancel a federated task",
    description="Closes the open round; what devices sent for it is deleted. 409 when over.",
    responses=errors(*ERRORS_AUTH, 404, 409, 422, 503),
)
async def cancel_task(
    task_id: _TaskId,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> TaskPublic:
    """Cancel a running task."""
    service = state.federated_service
    info = await run_in_threadpool(
        lambda: service.cancel_task(principal.app_id, task_id, actor=_actor(principal))
    )
    return _task(info)


# ---------------------------------------------------------------- devices


@router.post(
    "/v1/federated/tasks/{task_id}/join",
    response_model=JoinPublic,
    summary="Join a federated round",
    description=(
        "The device reports its conditions and local sample count; selected, it gets its "
        "client id and the round's URL. Idempotent per device and round. 403 "
        "`fl_not_eligible` / `fl_not_selected`, 409 `fl_round_closed` / `fl_wrong_round` / "
        "`fl_task_closed` (docs/federated-protocol.md, §2)."
    ),
    responses=errors(*_DEVICE_ERRORS),
)
async def join(
    task_id: _TaskId,
    body: JoinRequest,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> JoinPublic:
    """Join the open round."""
    service = state.federated_service
    answer = await run_in_threadpool(
        lambda: service.join(
            principal.app_id,
            task_id,
            device_id=body.device_id,
            round_number=body.round,
            conditions=body.conditions.model_dump(),
            num_samples=body.num_samples,
            base_version=body.base_version,
        )
    )
    return JoinPublic.model_validate(answer.to_dict())


@router.get(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}",
    summary="The signed round document",
    description=(
        "Canonical JSON (weights, recipe, clip norm, deadline, SecAgg parameters), signed "
        "with the app's package-signing key: verify `Pocketml-Signature` over "
        "`pocketml-fl-round-v1\\x00` + the body with the keyring before parsing "
        "(docs/federated-protocol.md, §3). 403 for a device not in the round."
    ),
    response_class=Response,
    responses={
        200: {"content": {"application/json": {}}, "description": "The round document."},
        **errors(*ERRORS_AUTH, 404, 422, 503),
    },
)
async def round_document(
    task_id: _TaskId,
    round_number: _Round,
    device_id: _DeviceId,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> Response:
    """The signed round document."""
    service = state.federated_service
    signed = await run_in_threadpool(
        service.round_document, principal.app_id, task_id, round_number, device_id
    )
    return Response(
        signed.body,
        media_type="application/json",
        headers={
            ROUND_SIGNATURE_KEY_HEADER: signed.key_id,
            ROUND_SIGNATURE_HEADER: base64.b64encode(signed.signature).decode("ascii"),
            "Cache-Control": "private, no-cache",
        },
    )


@router.put(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/update",
    status_code=202,
    response_model=UploadPublic,
    summary="Upload the update",
    description=(
        "Body: `n_values` float32 little-endian (a plain round) or uint32 little-endian "
        "masked values (a SecAgg round), `Content-Type: application/octet-stream`. The "
        "same `Idempotency-Key` and bytes again answer 200 with `duplicate: true`; other "
        "bytes 409 `fl_already_reported`. A wrong length, NaN/Inf or a norm above the "
        "clip norm: 422 `fl_wrong_shape` / `fl_not_finite` / `fl_norm_too_large`, never "
        "stored (docs/federated-protocol.md, §4)."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {_OCTETS: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={200: {"model": UploadPublic}, **errors(*_DEVICE_ERRORS, 415)},
)
async def upload(
    request: Request,
    response: Response,
    task_id: _TaskId,
    round_number: _Round,
    device_id: _DeviceId,
    idempotency_key: Annotated[
        str, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)
    ],
    num_samples: int = Query(1, ge=1, le=10**9, description="Samples trained on."),
    clipped: Literal["true", "false"] | None = Query(
        None,
        alias=UPLOAD_CLIPPED_PARAM,
        description=(
            "Plain rounds: whether the update's norm exceeded `clip_norm` before the "
            "device clipped it (adaptive clipping counts it); absent: the server measures."
        ),
    ),
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> UploadPublic:
    """Store the device's update (or masked input)."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != _OCTETS:
        raise UnsupportedMediaType(
            f"an update is sent as {_OCTETS} (float32 or uint32 little-endian); got "
            f"{media or 'no Content-Type'}."
        )
    body = await read_body(request.receive, state.settings.server.limits.max_device_body_kb * 1024)
    service = state.federated_service
    answer = await run_in_threadpool(
        lambda: service.upload(
            principal.app_id,
            task_id,
            round_number,
            device_id=device_id,
            num_samples=num_samples,
            idempotency_key=idempotency_key,
            body=body,
            clipped=None if clipped is None else clipped == "true",
        )
    )
    if answer.duplicate:
        response.status_code = 200
    return UploadPublic.model_validate(answer.to_dict())


@router.get(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/secagg",
    response_model=SecAggStatePublic,
    summary="The SecAgg state of a round (polled)",
    description=(
        "The phase and what this device needs for it: the config (from `advertise`), the "
        "roster (from `share`), its inbox (from `masked_input`), survivors and dropped "
        "clients (`unmask`). docs/federated-protocol.md, §5."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409, 422, 503),
)
async def secagg_state(
    task_id: _TaskId,
    round_number: _Round,
    device_id: _DeviceId,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> SecAggStatePublic:
    """The round's SecAgg state for this device."""
    service = state.federated_service
    info = await run_in_threadpool(
        service.secagg_state, principal.app_id, task_id, round_number, device_id
    )
    return SecAggStatePublic.model_validate(info.to_dict())


async def _secagg_step(
    state: ServerState,
    principal: Principal,
    task_id: str,
    round_number: int,
    step: Literal["keys", "shares", "unmask"],
    body: SecAggKeysRequest | SecAggSharesRequest | SecAggUnmaskRequest,
    response: Response,
) -> UploadPublic:
    service = state.federated_service
    method = getattr(service, f"secagg_{step}")
    answer = await run_in_threadpool(
        method, principal.app_id, task_id, round_number, body.device_id, body.model_dump()
    )
    if answer.duplicate:
        response.status_code = 200
    return UploadPublic.model_validate(answer.to_dict())


_SECAGG_RESPONSES = {200: {"model": UploadPublic}, **errors(*_DEVICE_ERRORS)}


@router.post(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/secagg/keys",
    status_code=202,
    response_model=UploadPublic,
    summary="SecAgg step 1: advertise keys",
    responses=_SECAGG_RESPONSES,
)
async def secagg_keys(
    task_id: _TaskId,
    round_number: _Round,
    body: SecAggKeysRequest,
    response: Response,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> UploadPublic:
    """Store the device's public keys (phase ``advertise``)."""
    return await _secagg_step(state, principal, task_id, round_number, "keys", body, response)


@router.post(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/secagg/shares",
    status_code=202,
    response_model=UploadPublic,
    summary="SecAgg step 2: share keys",
    responses=_SECAGG_RESPONSES,
)
async def secagg_shares(
    task_id: _TaskId,
    round_number: _Round,
    body: SecAggSharesRequest,
    response: Response,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> UploadPublic:
    """Relay the device's encrypted shares (phase ``share``)."""
    return await _secagg_step(state, principal, task_id, round_number, "shares", body, response)


@router.post(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/secagg/unmask",
    status_code=202,
    response_model=UploadPublic,
    summary="SecAgg step 4: unmask",
    responses=_SECAGG_RESPONSES,
)
async def secagg_unmask(
    task_id: _TaskId,
    round_number: _Round,
    body: SecAggUnmaskRequest,
    response: Response,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> UploadPublic:
    """Store a survivor's unmask shares (phase ``unmask``)."""
    return await _secagg_step(state, principal, task_id, round_number, "unmask", body, response)


@router.post(
    "/v1/federated/tasks/{task_id}/rounds/{round_number}/leave",
    status_code=202,
    summary="Leave a round",
    description="The device gives up (battery, Wi-Fi, timeout...); 200 when it had left.",
    responses={200: {"description": "Left (or reported) already."}, **errors(*_DEVICE_ERRORS)},
)
async def leave(
    task_id: _TaskId,
    round_number: _Round,
    body: LeaveRequest,
    response: Response,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> dict[str, bool]:
    """Leave the round."""
    service = state.federated_service
    left = await run_in_threadpool(
        lambda: service.leave(
            principal.app_id, task_id, round_number, device_id=body.device_id, reason=body.reason
        )
    )
    if not left:
        response.status_code = 200
    return {"left": left}
