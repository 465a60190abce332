"""Consented samples: ``POST /v1/samples``, ``DELETE /v1/device/data`` and the admin side.

The device routes authenticate like telemetry (device key); the request guard has already
refused a body over ``max_samples_body_kb`` (413) before any byte was read or any token was
looked up. The sample batch is parsed with the protocol's one parser and stored by
``SampleStore.ingest`` (all-or-nothing; 422 naming ``samples[i].field``). Forgetting a
device deletes its samples, feedback and telemetry in one transaction, audited.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from pocketml.protocol import DEVICE_ID_PATTERN
from pocketml.registry import Principal
from pocketml.server._json import parse_json
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin
from pocketml.server.device_api import read_body
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._device_auth import device_principal, device_state
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas_samples import (
    ForgetPublic,
    SampleBatchRequest,
    SampleListPublic,
    SamplePublic,
    SamplesAccepted,
)

__all__ = ["router"]

router = APIRouter(tags=["samples"], route_class=StrictJsonRoute)

_DEVICE_ID = Query(pattern=DEVICE_ID_PATTERN, description="The device's id.")


@router.post(
    "/v1/samples",
    response_model=SamplesAccepted,
    summary="Send consented samples",
    description=(
        "A batch of at most 100 consented samples (docs/protocol.md, Samples). Checked "
        "whole before anything is stored: a sample of a model or version the app lacks, "
        "a tensor whose shape is not the schema's, NaN, or a label outside the schema's "
        "labels rejects the batch with 422 naming `samples[i].field`. Idempotent per "
        "`sample_id`: a re-sent sample counts in `duplicates` and is stored once. A body "
        "over the server's `max_samples_body_kb` answers 413 before authentication."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SampleBatchRequest.model_json_schema()}},
        }
    },
    responses=errors(400, *ERRORS_AUTH, 413, 422, 503),
)
async def ingest_samples(
    request: Request,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> SamplesAccepted:
    """Validate and store one batch."""
    body = parse_json(await read_body(request.receive, state.max_samples_bytes))
    result = await run_in_threadpool(state.sample_store.ingest, principal.app_id, body)
    return SamplesAccepted(accepted=result.accepted, duplicates=result.duplicates)


@router.delete(
    "/v1/device/data",
    response_model=ForgetPublic,
    summary="Forget this device",
    description=(
        "Deletes the calling device's samples, feedback and telemetry on the server "
        "(GDPR erasure), in one transaction, and records it in the sample audit. The "
        "device id is the capability: keep it secret like the device's cache."
    ),
    responses=errors(*ERRORS_AUTH, 422, 503),
)
async def forget_this_device(
    device_id: str = _DEVICE_ID,
    principal: Principal = Depends(device_principal),
    state: ServerState = Depends(device_state),
) -> ForgetPublic:
    """Forget the calling device."""
    report = await run_in_threadpool(
        lambda: state.sample_store.forget_device(principal.app_id, device_id, actor="device")
    )
    return ForgetPublic.model_validate(report.to_dict())


@router.delete(
    "/v1/admin/devices/{device_id}/data",
    response_model=ForgetPublic,
    summary="Forget a device (admin)",
    description=(
        "Deletes one device's samples, feedback and telemetry (GDPR erasure request), in "
        "one transaction, audited with the admin as actor."
    ),
    responses=errors(*ERRORS_AUTH, 422, 503),
)
def forget_device(
    device_id: str = Path(pattern=DEVICE_ID_PATTERN, description="The device's id."),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ForgetPublic:
    """Forget one device of the caller's app."""
    report = state.sample_store.forget_device(
        principal.app_id, device_id, actor=f"admin:{principal.app_id}"
    )
    return ForgetPublic.model_validate(report.to_dict())


@router.get(
    "/v1/admin/models/{name}/samples",
    response_model=SampleListPublic,
    summary="List a model's samples",
    description=(
        "A page of the model's consented samples (oldest first; `after` pages on) and the "
        "labelled/unlabelled counts per device class (a label is the sample's own, else "
        "the feedback of its prediction id)."
    ),
    responses=errors(*ERRORS_AUTH, 404, 422, 503),
)
def list_samples(
    name: ModelName,
    device_id: str | None = Query(None, pattern=DEVICE_ID_PATTERN),
    after: int | None = Query(None, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> SampleListPublic:
    """List one model's samples."""
    page = state.sample_store.list(
        principal.app_id, name, device_id=device_id, after=after, limit=limit
    )
    return SampleListPublic(
        model=name,
        items=[SamplePublic.model_validate(item.to_dict()) for item in page.items],
        next_after=page.next_after,
        counts={k: dict(v) for k, v in page.counts.items()},
    )


@router.get(
    "/v1/admin/models/{name}/samples/export",
    response_class=Response,
    summary="Export a model's labelled samples",
    description=(
        "The labelled samples as one NPZ (`x` in raw dataset units, `y`, `class_names`, "
        "`layout`, and `sample_id`, `device_id`, `device_class`, `version`) that "
        "`pocketml.data.load_dataset` reads. `X-Pocketml-Samples` carries the count and "
        "`X-Pocketml-Fingerprint` the samples' fingerprint."
    ),
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The NPZ."},
        **errors(*ERRORS_AUTH, 404, 422, 503),
    },
)
def export_samples(
    name: ModelName,
    since: float | None = Query(
        None, ge=0, le=1e11, allow_inf_nan=False, description="Received at or after (unix s)."
    ),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> Response:
    """Export one model's labelled samples."""
    body, samples = state.sample_store.export_npz(principal.app_id, name, since=since)
    return Response(
        body,
        media_type="application/octet-stream",
        headers={
            "X-Pocketml-Samples": str(len(samples)),
            "X-Pocketml-Fingerprint": samples.fingerprint(),
        },
    )
