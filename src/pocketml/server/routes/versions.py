"""Version routes under ``/v1/admin/models/{name}/versions``: push, list, show, stage, delete.

A push is ``multipart/form-data``: a ``metadata`` part (JSON of ``VersionCreate``) and one
file part per variant, named after the variant. Parts are streamed to temp files under
``<home>/tmp`` (see ``_upload.py``), handed to ``Registry.push_version`` (all or nothing),
and always removed afterwards.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from pocketml.errors import InvalidInput, NotFound, ValidationFailed
from pocketml.registry import ModelFileRejected, Principal, VersionCreate
from pocketml.server._state import ServerState, server_state
from pocketml.server._upload import METADATA_FIELD, remove_files, spool_version_upload
from pocketml.server.auth import require_admin
from pocketml.server.routes._body import StrictJsonRoute, parse_json
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName
from pocketml.server.schemas import Stage, StageChange, VersionPage, VersionPublic
from pocketml.sketch import ReferenceProfile

__all__ = ["router"]

router = APIRouter(prefix="/models/{name}/versions", tags=["versions"], route_class=StrictJsonRoute)

VERSION = Path(ge=1, le=2_147_483_647, description="The version number.", examples=[1])

_PUSH_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [METADATA_FIELD],
                "properties": {
                    METADATA_FIELD: {
                        "type": "string",
                        "description": "JSON of VersionCreate (lineage, card, variants).",
                        "example": '{"variants": [{"name": "onnx-fp32", "format": "onnx", '
                        '"precision": "fp32"}]}',
                    }
                },
                "additionalProperties": {
                    "type": "string",
                    "format": "binary",
                    "description": "One model file per variant; the field name is the variant.",
                },
            },
            "encoding": {METADATA_FIELD: {"contentType": "application/json"}},
        }
    },
}


def _parse_metadata(raw: bytes) -> VersionCreate:
    payload = parse_json(raw, f"the '{METADATA_FIELD}' part")
    try:
        meta = VersionCreate.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", METADATA_FIELD, *err["loc"])} for err in exc.errors()]
        ) from exc
    if meta.reference_profile is not None:
        _check_profile(meta.reference_profile)
    return meta


def _check_profile(profile: dict[str, Any]) -> None:
    """Refuse a reference profile the monitor could not read back (422, nothing stored)."""
    try:
        ReferenceProfile.from_dict(profile)
    except InvalidInput as exc:
        raise ValidationFailed(
            f"metadata field 'reference_profile': {exc} Or leave the field out."
        ) from exc


@router.post(
    "",
    status_code=201,
    response_model=VersionPublic,
    summary="Push a version",
    description=(
        "Uploads a new immutable version: a `metadata` part with the VersionCreate JSON "
        "(lineage, model card, one entry per variant) and one file part per variant whose "
        "field name is the variant name. The server checks each file's sha256, builds a "
        "signed (optionally encrypted) package per variant and stores the version in one "
        "transaction: on any failure nothing is stored. A duplicate version number answers "
        "409, and so does a double push: model files exactly those of an existing version "
        "(the same set of variant sha256s; the message names that version) unless the "
        'metadata says `"force": true`. A sha256 mismatch answers 422, a body over the '
        "upload limit 413."
    ),
    openapi_extra={"requestBody": _PUSH_BODY},
    responses=errors(400, *ERRORS_AUTH, 404, 409, 413, 422),
)
async def push_version(
    request: Request,
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> VersionPublic:
    """Stream a multipart push to temp files and register it."""
    await run_in_threadpool(state.registry.get_model, principal.app_id, name)
    upload = await spool_version_upload(request, state.tmp_dir, state.max_upload_bytes)
    try:
        assert upload.metadata is not None
        meta = _parse_metadata(upload.metadata)
        info = await run_in_threadpool(
            state.registry.push_version, principal.app_id, name, meta, dict(upload.files)
        )
    except ModelFileRejected as exc:  # a 422 naming the variant's file part
        raise ValidationFailed(f"file part '{exc.variant}': {exc}") from exc
    finally:
        remove_files(upload.files)
    return VersionPublic.model_validate(info)


@router.get(
    "",
    response_model=VersionPage,
    summary="List versions",
    description="The model's versions, newest first, optionally only one stage.",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def list_versions(
    name: ModelName,
    stage: Stage | None = Query(None, description="Only versions in this stage."),
    limit: int = Query(50, ge=1, le=500, description="Page size."),
    offset: int = Query(0, ge=0, le=10_000_000, description="Items to skip."),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> VersionPage:
    """List a model's versions."""
    page = state.registry.list_versions(
        principal.app_id, name, stage=stage, limit=limit, offset=offset
    )
    return VersionPage(
        items=[VersionPublic.model_validate(item) for item in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/{version}",
    response_model=VersionPublic,
    summary="Show a version",
    description="One version with lineage, model card and every variant with its package.",
    responses=errors(*ERRORS_AUTH, 404, 422),
)
def show_version(
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> VersionPublic:
    """Show one version."""
    return VersionPublic.model_validate(state.registry.get_version(principal.app_id, name, version))


@router.get(
    "/{version}/profile",
    summary="Read a version's reference profile",
    description=(
        "The reference profile the version's packages ship as `profile.json` (bins and "
        "reference counts of the monitored input features, predicted class and confidence; "
        "docs/monitoring.md). 404 when the version was pushed without one."
    ),
    responses={
        200: {"description": "The profile JSON.", "content": {"application/json": {}}},
        **errors(*ERRORS_AUTH, 404, 422),
    },
)
def show_profile(
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> dict[str, Any]:
    """The version's reference profile."""
    profile = state.registry.get_reference_profile(principal.app_id, name, version)
    if profile is None:
        raise NotFound(
            f"version {version} of {name!r} has no reference profile; push a build made by "
            "`pocketml build` (it writes profile.json) to get one."
        )
    return profile


@router.post(
    "/{version}/stage",
    response_model=VersionPublic,
    summary="Change a version's stage",
    description=(
        "Moves the version to candidate, production or archived. A model has at most one "
        "production version: promoting one archives the previous production version. The "
        "change is recorded in the audit log (action `version.stage`, subject the model's id)."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def set_stage(
    body: StageChange,
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> VersionPublic:
    """Promote, demote or archive a version."""
    info = state.delivery.models.set_stage(  # audited; devices see it at their next check-in
        principal.app_id, name, version, body.stage, actor=f"admin:{principal.app_id}"
    )
    return VersionPublic.model_validate(info)


@router.delete(
    "/{version}",
    status_code=204,
    response_class=Response,
    summary="Delete a version",
    description="Deletes a version that is not in production (archive it first: 409).",
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def delete_version(
    name: ModelName,
    version: int = VERSION,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> Response:
    """Delete a non-production version."""
    state.registry.delete_version(principal.app_id, name, version)
    state.delivery.invalidate(principal.app_id)
    return Response(status_code=204)
