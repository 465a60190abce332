"""Admin routes under ``/v1/admin``: apps (operator), the caller's app, and its models.

Version routes live in ``versions.py`` and are included here, so ``admin.router`` is the
whole admin API. Handlers are thin: parse, call one ``Registry`` method in the thread
pool (FastAPI runs sync handlers there), map the frozen dataclass to its ``XPublic`` model.
Every object is looked up inside the caller's app: another app's token sees 404.
Correcting (``PATCH``) and deleting (``DELETE``) a model go through the delivery service,
which owns the audit log and the rows that hang off a model (rollouts, experiments).
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query, Response
from pydantic import ConfigDict, Field, model_validator

from pocketml.bounds import Bounded, JsonObject, Text
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
    DeviceKeyListPublic,
    DeviceKeyPublic,
    DeviceKeyRevokeRequest,
    DeviceKeyRotatedPublic,
    DeviceKeyRotateRequest,
    ModelPage,
    ModelPublic,
    PackageAccessChange,
    PackageAccessPublic,
    RotatedPublic,
    RotateRequest,
)
from pocketml.server.schemas_keys import KeyRevokedPublic, KeyRevokeRequest, KeyringPublic

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
        "new one is returned only here; to keep installed app builds working, rotate the "
        "device key with an overlap: POST /v1/admin/app/device-keys/rotate). "
        "`signing_key`: new packages are signed with a new key; the previous key stays "
        "in the keyring as a verify-only key so packages already shipped still verify, "
        "and the new keyring is signed by both keys "
        "(docs/packages.md, Signing keys: rotation and revocation). Audited."
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
        app = state.registry.rotate_signing_key(
            principal.app_id, actor=_actor(principal), lost_master_key=body.lost_master_key
        )
        state.delivery.invalidate(principal.app_id)  # devices get the new keyring at once
        return RotatedPublic(
            credential=body.credential, token=None, app=AppPublic.model_validate(app)
        )
    token = state.registry.rotate_credential(principal.app_id, body.credential)
    state.principals.forget_app(principal.app_id)
    app = state.registry.get_app(principal.app_id)
    return RotatedPublic(credential=body.credential, token=token, app=AppPublic.model_validate(app))


@router.get(
    "/app/keyring",
    response_model=KeyringPublic,
    tags=["apps"],
    summary="The app's signed keyring",
    description=(
        "The keys devices may trust to verify the app's packages, signed and sequenced: "
        "ship it with the app build (`Device(trusted_keys=...)`). Check-in publishes the "
        "same document as `keyring`."
    ),
    responses=errors(*ERRORS_AUTH),
)
def show_keyring(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> KeyringPublic:
    """Show the caller's keyring."""
    return KeyringPublic.model_validate(state.registry.get_keyring(principal.app_id))


@router.post(
    "/app/keys/revoke",
    response_model=KeyRevokedPublic,
    tags=["apps"],
    summary="Revoke a retired signing key",
    description=(
        "Re-signs every package the key signed with the active key (same model, new package "
        "id), then removes the key from the keyring for good; devices refuse packages it "
        "signed from their next check-in. The active key cannot be revoked (409: rotate "
        "first). Audited with the reason."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def revoke_signing_key(
    body: KeyRevokeRequest,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> KeyRevokedPublic:
    """Revoke one of the app's retired signing keys."""
    change = state.registry.revoke_signing_key(
        principal.app_id, body.key_id, actor=_actor(principal), reason=body.reason
    )
    state.delivery.invalidate(principal.app_id)
    return KeyRevokedPublic.of(change.keyring, change.resigned)


@router.get(
    "/app/device-keys",
    response_model=DeviceKeyListPublic,
    tags=["apps"],
    summary="List the app's device keys",
    description=(
        "Every device key of the app, newest first, with its state: the active one, previous "
        "ones still working until `expires_at`, expired and revoked ones. Never the keys."
    ),
    responses=errors(*ERRORS_AUTH),
)
def list_device_keys(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DeviceKeyListPublic:
    """List the caller's device keys."""
    keys = state.registry.list_device_keys(principal.app_id)
    return DeviceKeyListPublic(items=[DeviceKeyPublic.model_validate(k) for k in keys])


@router.post(
    "/app/device-keys/rotate",
    response_model=DeviceKeyRotatedPublic,
    tags=["apps"],
    summary="Rotate the device key with an overlap",
    description=(
        "Issues a new device key (returned only here: ship it in the next app build). The "
        "previous keys keep working for `overlap_days` (default 30) so installed builds have "
        "time to update; 0 revokes them now. One transaction, audited. The replica that "
        "answers stops accepting an ended key at once; other replicas may accept it for up "
        "to `auth_ttl_s` more seconds (docs/operations.md)."
    ),
    responses=errors(*ERRORS_AUTH, 422),
)
def rotate_device_key(
    body: DeviceKeyRotateRequest,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DeviceKeyRotatedPublic:
    """Rotate the caller's device key, keeping the previous one for the overlap."""
    rotated = state.registry.rotate_device_key(
        principal.app_id,
        overlap_days=body.overlap_days,
        actor=_actor(principal),
        reason=body.reason,
    )
    state.principals.forget_app(principal.app_id)  # overlap 0: the old key stops here, now
    return DeviceKeyRotatedPublic(
        device_key=rotated.device_key,
        keys=[DeviceKeyPublic.model_validate(k) for k in rotated.keys],
    )


@router.post(
    "/app/device-keys/revoke",
    response_model=DeviceKeyPublic,
    tags=["apps"],
    summary="Revoke a previous device key now",
    description=(
        "Ends a previous device key's overlap at once (e.g. it leaked). The active key "
        "cannot be revoked (409: rotate with `overlap_days: 0` instead). Audited."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def revoke_device_key(
    body: DeviceKeyRevokeRequest,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> DeviceKeyPublic:
    """Revoke one of the caller's previous device keys."""
    revoked = state.registry.revoke_device_key(
        principal.app_id, body.key_id, actor=_actor(principal), reason=body.reason
    )
    state.principals.forget_app(principal.app_id)
    return DeviceKeyPublic.model_validate(revoked)


@router.get(
    "/app/package-access",
    response_model=PackageAccessPublic,
    tags=["apps"],
    summary="Who may fetch the app's packages",
    description="Whether the app's packages are public (CDN-cacheable) or private.",
    responses=errors(*ERRORS_AUTH),
)
def show_package_access(
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> PackageAccessPublic:
    """Show the caller's package access."""
    return PackageAccessPublic(public=state.registry.packages_public(principal.app_id))


@router.post(
    "/app/package-access",
    response_model=PackageAccessPublic,
    tags=["apps"],
    summary="Make the app's packages public or private",
    description=(
        "`public: true` (the default of every app): a package is served without a key to "
        "whoever holds its id, as `Cache-Control: public`, so a CDN may cache it. "
        "`public: false`: only the app's device key or admin token downloads it, as "
        "`Cache-Control: private`. Copies a CDN already holds are not purged. Audited."
    ),
    responses=errors(*ERRORS_AUTH, 422),
)
def change_package_access(
    body: PackageAccessChange,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> PackageAccessPublic:
    """Make the caller's packages public or private."""
    public = state.registry.set_packages_public(
        principal.app_id, body.public, actor=_actor(principal), reason=body.reason
    )
    return PackageAccessPublic(public=public)


def _actor(principal: Principal) -> str:
    return f"admin:{principal.app_id}"


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


class ModelUpdate(Bounded):
    """A correction of a model: its description and/or schema (absent: unchanged)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: Text | None = Field(None, max_length=2000)
    schema_: JsonObject | None = Field(
        None,
        alias="schema",
        description="The new ModelSchema JSON, validated like at creation. Once versions "
        "exist, inputs and outputs must stay unchanged (409).",
    )

    @model_validator(mode="after")
    def _something_to_change(self) -> ModelUpdate:
        if self.description is None and self.schema_ is None:
            raise ValueError('give "description" and/or "schema" to change')
        return self


@router.patch(
    "/models/{name}",
    response_model=ModelPublic,
    tags=["models"],
    summary="Correct a model",
    description=(
        "Changes the model's description and/or schema; audited. The schema is validated "
        "like at creation; while the model has no version any valid schema goes, once "
        "versions exist its inputs and outputs must stay as they are (409): packages carry "
        "the schema they were signed with. Other sections apply to later versions."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409, 422),
)
def update_model(
    body: ModelUpdate,
    name: ModelName,
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> ModelPublic:
    """Correct a model's description or schema."""
    info = state.delivery.models.update(
        principal.app_id,
        name,
        description=body.description,
        schema=body.schema_,
        actor=f"admin:{principal.app_id}",
    )
    return ModelPublic.model_validate(info)


@router.delete(
    "/models/{name}",
    status_code=204,
    response_class=Response,
    tags=["models"],
    summary="Delete a model",
    description=(
        "Deletes the model, its versions and variants, targeting, rollouts and experiments "
        "in one transaction (audited), then the artifacts nothing else uses. While a "
        "rollout is active or an experiment runs it answers 409, unless `force=true`. "
        "Check-in stops listing the model."
    ),
    responses=errors(*ERRORS_AUTH, 404, 409),
)
def delete_model(
    name: ModelName,
    force: bool = Query(False, description="Delete even with a rollout or experiment running."),
    principal: Principal = Depends(require_admin),
    state: ServerState = Depends(server_state),
) -> Response:
    """Delete a model and everything that hangs off it."""
    state.delivery.models.delete(
        principal.app_id, name, force=force, actor=f"admin:{principal.app_id}"
    )
    return Response(status_code=204)


router.include_router(versions.router)
