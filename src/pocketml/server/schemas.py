"""Pydantic models of the admin API's responses and small request bodies (``XPublic``).

Request bodies that create registry objects reuse the registry's own pydantic inputs
(``ModelCreate``, ``VersionCreate``); everything the server returns is one of the models
below, built from the registry's frozen dataclasses with ``from_attributes``. This module
imports pydantic only, so the CLI's ``AdminClient`` can parse responses with the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pocketml.bounds import Bounded

__all__ = [
    "AppCreate",
    "AppCreatedPublic",
    "AppListPublic",
    "AppPublic",
    "DeviceKeyListPublic",
    "DeviceKeyPublic",
    "DeviceKeyRevokeRequest",
    "DeviceKeyRotateRequest",
    "DeviceKeyRotatedPublic",
    "ErrorBody",
    "ErrorDetail",
    "HealthPublic",
    "ModelPage",
    "ModelPublic",
    "PackageAccessChange",
    "PackageAccessPublic",
    "RotateRequest",
    "RotatedPublic",
    "StageChange",
    "VariantPublic",
    "VersionPage",
    "VersionPublic",
]

Stage = Literal["candidate", "production", "archived"]

_TS = "2025-01-01T12:00:00Z"
_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ErrorDetail(BaseModel):
    """What went wrong: a stable code, a message for people, the request id for logs."""

    code: str = Field(description="Stable machine-readable code, e.g. 'not_found'.")
    message: str = Field(description="What was expected, what was given, what to do.")
    request_id: str = Field(description="Echo of X-Request-ID; quote it in bug reports.")


class ErrorBody(BaseModel):
    """The one JSON shape of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "not_found",
                        "message": "model 'digits' does not exist in this app.",
                        "request_id": "5f0c2b7e8a9d4c1e",
                    }
                }
            ]
        }
    )

    error: ErrorDetail


class HealthPublic(BaseModel):
    """Liveness answer of ``GET /healthz``."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ok", "version": "0.1.0"}]}
    )

    status: Literal["ok"] = "ok"
    version: str


class AppPublic(_Public):
    """An app (tenant) with its public signing keys (active and retired)."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "app_3b1f0c",
                    "name": "camera-app",
                    "created_at": _TS,
                    "signing_key_id": "ed25519:1a2b3c4d5e6f7a8b",
                    "public_keys": {"ed25519:1a2b3c4d5e6f7a8b": "base64-raw-ed25519-public-key"},
                }
            ]
        },
    )

    id: str
    name: str
    created_at: datetime
    signing_key_id: str = Field(description="Id of the key that signs new packages.")
    public_keys: dict[str, str] = Field(
        description="Key id -> base64 raw Ed25519 public key; pin these in the mobile app."
    )


class AppCreatedPublic(BaseModel):
    """A new app and its two credentials. The credentials are shown only this once."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "app": AppPublic.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                    "admin_token": "pml_adm_...",
                    "device_key": "pml_dev_...",
                }
            ]
        }
    )

    app: AppPublic
    admin_token: str = Field(description="Token for people and CI (admin routes).")
    device_key: str = Field(description="Key shipped inside the mobile app (device routes).")


class AppListPublic(BaseModel):
    """Every app on this server (operator only)."""

    items: list[AppPublic]
    total: int


class AppCreate(Bounded):
    """Body of ``POST /v1/admin/apps``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "camera-app"}]}
    )

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RotateRequest(Bounded):
    """Body of ``POST /v1/admin/app/rotate``: which credential to replace."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"credential": "device"}]}
    )

    credential: Literal["admin", "device", "signing_key"]
    lost_master_key: bool = Field(
        False,
        description="Only with signing_key, after losing the master key: sign the new keyring "
        "without the old keys. Devices then need an app update that ships the new keyring.",
    )

    @model_validator(mode="after")
    def _lost_key_only_for_signing(self) -> RotateRequest:
        if self.lost_master_key and self.credential != "signing_key":
            raise ValueError(
                f"lost_master_key applies to credential 'signing_key' only; got "
                f"credential {self.credential!r}. Drop lost_master_key."
            )
        return self


class RotatedPublic(BaseModel):
    """Result of a rotation: the new secret (admin/device) or the app's new signing key."""

    credential: Literal["admin", "device", "signing_key"]
    token: str | None = Field(None, description="The new admin token or device key, shown once.")
    app: AppPublic


class DeviceKeyPublic(_Public):
    """One device key of the app (its id and state; the key itself is never shown again)."""

    key_id: str = Field(description="dk_ + the first 16 hex characters of the key's sha256.")
    status: Literal["active", "expiring", "expired", "revoked"] = Field(
        description="active: new builds ship it. expiring: a previous key that still works "
        "until expires_at. expired / revoked: refused (401)."
    )
    created_at: datetime
    expires_at: datetime | None = Field(description="End of the overlap of a previous key.")
    revoked_at: datetime | None


class DeviceKeyListPublic(BaseModel):
    """Every device key of the app, newest first."""

    items: list[DeviceKeyPublic]


class DeviceKeyRotateRequest(Bounded):
    """Body of ``POST /v1/admin/app/device-keys/rotate``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"overlap_days": 30, "reason": "yearly rotation"}]},
    )

    overlap_days: float = Field(
        30.0,
        ge=0,
        le=365,
        allow_inf_nan=False,
        description="Days the previous keys keep working (installed builds update meanwhile); "
        "0 revokes them now.",
    )
    reason: str = Field("", max_length=500, description="Why (kept in the audit log).")


class DeviceKeyRotatedPublic(BaseModel):
    """The new device key (shown only here) and the state of every device key."""

    device_key: str = Field(description="The new key: ship it in the next app build.")
    keys: list[DeviceKeyPublic]


class DeviceKeyRevokeRequest(Bounded):
    """Body of ``POST /v1/admin/app/device-keys/revoke``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key_id": "dk_0123456789abcdef", "reason": "leaked"}]},
    )

    key_id: str = Field(pattern=r"^dk_[0-9a-f]{16}$", description="A previous device key.")
    reason: str = Field("", max_length=500, description="Why (kept in the audit log).")


class PackageAccessPublic(BaseModel):
    """Who may fetch the app's packages (docs/packages.md, Serving packages from a CDN)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"public": True}]})

    public: bool = Field(
        description="true: anyone holding a package id (announced only at check-in) may "
        "fetch it without a key, and answers are cacheable by a CDN. false: the app's "
        "device key is required and answers are Cache-Control: private."
    )


class PackageAccessChange(Bounded):
    """Body of ``POST /v1/admin/app/package-access``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"public": False, "reason": "unencrypted models"}]},
    )

    public: bool
    reason: str = Field("", max_length=500, description="Why (kept in the audit log).")


class StageChange(Bounded):
    """Body of ``POST .../versions/{version}/stage``."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"stage": "production"}]}
    )

    stage: Stage


class ModelPublic(_Public):
    """A named task inside an app, with its schema and the versions that matter."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "mdl_1",
                    "app_id": "app_3b1f0c",
                    "name": "digits",
                    "description": "8x8 handwritten digits",
                    "schema": {"inputs": [], "outputs": []},
                    "created_at": _TS,
                    "latest_version": 3,
                    "production_version": 2,
                }
            ]
        },
    )

    id: str
    app_id: str
    name: str
    description: str
    schema_: dict[str, Any] = Field(alias="schema", serialization_alias="schema")
    created_at: datetime
    latest_version: int | None
    production_version: int | None


class VariantPublic(_Public):
    """One built file of a version and its signed package."""

    id: str
    name: str
    format: str
    precision: str
    role: str
    size: int
    sha256: str = Field(examples=[_SHA])
    package_id: str = Field(description="sha256 of the package file; GET /v1/packages/{id}.")
    package_size: int
    signing_key_id: str
    content_key_id: str | None
    compatibility: dict[str, Any]
    metrics: dict[str, Any]
    benchmarks: dict[str, Any]
    profiles: list[str]
    created_at: datetime


class VersionPublic(_Public):
    """An immutable trained model version with lineage, card and variants."""

    id: str
    model: str
    version: int
    stage: Stage
    dataset_fingerprint: str | None
    parent_version: int | None
    source_framework: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_record: dict[str, Any]
    card: str
    created_at: datetime
    variants: list[VariantPublic]
    reference_profile_sha256: str | None = Field(
        None,
        description=(
            "sha256 of the version's reference profile (every package's signed profile.json "
            "member); null when the version was pushed without one."
        ),
    )


class ModelPage(BaseModel):
    """One page of models."""

    items: list[ModelPublic]
    total: int
    limit: int
    offset: int


class VersionPage(BaseModel):
    """One page of versions, newest first."""

    items: list[VersionPublic]
    total: int
    limit: int
    offset: int
