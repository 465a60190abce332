"""Admin routes under ``/v1/admin``: apps (operator), the caller's app, and its models.

Version routes live in ``versions.py`` and are included here, so ``admin.router`` is the
whole admin API. Handlers are thin: parse, call one ``Registry`` method in the thread
pool (FastAPI runs sync handlers there), map the frozen dataclass to its ``XPublic`` model.
Every object is looked up inside the caller's app: another app's token sees 404.
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query

from pocketml.registry import ModelCreate, Principal
from pocketml.server._state import ServerState, server_state
from pocketml.server.auth import require_admin, require_operator
from pocketml.server.routes import versions
from pocketml.server.routes._body import StrictJsonRoute
from pocketml.server.routes._docs import ERRORS_AUTH, errors
from pocketml.server.routes._params import ModelName, NamePrefix
from pocketml.server.schemas import (
    AppCreate,
    AppCreatedPublic,
    AppListPublic,
    AppPublic,
    ModelPage,
    ModelPublic,
    RotatedPublic,
    RotateRequest,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", route_class=StrictJsonRoute)


_SCHEMA_EXAMPLE = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "pixels", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [{"name": "probabilities", "kind": "probabilities", "labels": ["0", "1"]}],
}


@router.post(
    "/apps",
    status_code=201,
    response_model=AppCreatedPublic,
    tags=["apps"],
    summary="Create an app (operator)",
    description=(
        "Creates an app (a tenant) with its Ed25519 signing key, admin token and device "
        "key. The two credentials are returned only in this response: store them. Needs "
        "the operator token."
    ),
    responses=errors(*ERRORS_AUTH, 409, 422),
)
def create_app_route(
    body: AppCreate,
    _: Principal = Depends(require_operator),
    state: ServerState = Depends(server_state),
) -> AppCreatedPublic:
    """Create an app and return its credentials once."""
    return AppCreatedPublic.model_validate(
        state.registry.create_app(body.name), from_attributes=True
    )


@router.get(
    "/apps",
    response_model=AppListPublic,
    tags=["apps"],
    summary="List apps (operator)",
    description="Every app on this server with its public keys. Needs the operator token.",
    responses=errors(*ERRORS_AUTH),
)
def list_apps(
    _: Principal = Depends(require_operator),
    state: ServerState = Depends(server_state),
) -> AppListPublic:
    """List every app."""
    apps = state.registry.list_apps()
    return AppListPublic(
        items=[AppPublic.model_validate(app, from_attributes=True) for app in apps],
        total=len(apps),
    )


@router.get(
    "/app",
    response_model=AppPublic,
    tags=["apps"],
    summary="Show the caller's app",
    description=(
        "The app the admin token belongs to, with every public signing key (active and "
        "retired): pin these in the mobile app to verify packages."
    ),
    responses=errors(*ERRORS_AUTH),
)
def show_own_app(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> AppPublic:
    """Show the caller's own app."""
    return AppPublic.model_validate(state.registry.get_app(principal.app_id))


@router.post(
    "/app/rotate",
    response_model=RotatedPublic,
    tags=["apps"],
    summary="Rotate a credential of the caller's app",
    description=(
        "`admin` or `device`: replaces the token (the old one stops working at once; the "
        "new one is returned only here). `signing_key`: new packages are signed with a new "
        "key; the old public key stays listed so packages already shipped still verify."
    ),
    responses=errors(*ERRORS_AUTH, 422),
)
def rotate_credential(
    body: RotateRequest,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> RotatedPublic:
    """Rotate the admin token, the device key or the signing key."""
    if body.credential == "signing_key":
        app = state.registry.rotate_signing_key(principal.app_id)
        return RotatedPublic(
            credential=body.credential, token=None, app=AppPublic.model_validate(app)
        )
    token = state.registry.rotate_credential(principal.app_id, body.credential)
    app = state.registry.get_app(principal.app_id)
    return RotatedPublic(credential=body.credential, token=token, app=AppPublic.model_validate(app))


@router.post(
    "/models",
    status_code=201,
    response_model=ModelPublic,
    tags=["models"],
    summary="Create a model",
    description=(
        "Creates a named model in the caller's app with its ModelSchema (the JSON shipped "
        "with every package). Names are unique per app: a duplicate answers 409; a "
        "malformed schema 422 naming the field."
    ),
    responses=errors(*ERRORS_AUTH, 409, 422),
)
def create_model(
    body: ModelCreate = Body(
        openapi_examples={
            "digits": {
                "summary": "A small image classifier",
                "value": {"name": "digits", "description": "8x8 digits", "schema": _SCHEMA_EXAMPLE},
            }
        }
    ),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ModelPublic:
    """Create a model in the caller's app."""
    return ModelPublic.model_validate(state.registry.create_model(principal.app_id, body))


@router.get(
    "/models",
    response_model=ModelPage,
    tags=["models"],
    summary="List models",
    description="The caller's models by name, one page at a time; `prefix` filters by name.",
    responses=errors(*ERRORS_AUTH, 422),
)
def list_models(
    limit: int = Query(50, ge=1, le=500, description="Page size."),
    offset: int = Query(0, ge=0, le=10_000_000, description="Items to skip."),
    prefix: NamePrefix = None,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ModelPage:
    """List the caller's models."""
    page = state.registry.list_models(principal.app_id, limit=limit, offset=offset, prefix=prefix)
    return ModelPage(
        items=[ModelPublic.model_validate(item) for item in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get(
    "/models/{name}",
    response_model=ModelPublic,
    tags=["models"],
    summary="Show a model",
    description="One model of the caller's app, with its latest and production versions.",
    responses=errors(*ERRORS_AUTH, 404),
)
def show_model(
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ModelPublic:
    """Show one model."""
    return ModelPublic.model_validate(state.registry.get_model(principal.app_id, name))


router.include_router(versions.router)
