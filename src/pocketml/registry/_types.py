"""The registry's values: frozen dataclasses it returns and pydantic models it accepts.

Outputs (``AppInfo``, ``ModelInfo``, ``VersionInfo``, ...) are frozen dataclasses; ORM rows
never leave the store. Inputs (``ModelCreate``, ``VersionCreate``, ``VariantUpload``) are
pydantic models with ``extra="forbid"`` so the server can reuse them as request bodies.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import ConfigDict, Field, model_validator

from pocketml.bounds import Bounded, JsonObject, Text, VersionNumber
from pocketml.protocol import FORMAT_NAMES

__all__ = [
    "FORMATS",
    "PRECISIONS",
    "ROLES",
    "STAGES",
    "AppCreated",
    "AppInfo",
    "KeyringChange",
    "ModelCreate",
    "ModelInfo",
    "Page",
    "Principal",
    "StoredPackage",
    "VariantInfo",
    "VariantUpload",
    "VersionCreate",
    "VersionInfo",
]

T = TypeVar("T")

Stage = Literal["candidate", "production", "archived"]
Format = Literal["onnx", "ort", "tflite", "coreml"]
Precision = Literal["fp32", "fp16", "int8"]
Role = Literal["device", "cloud"]

STAGES: tuple[str, ...] = ("candidate", "production", "archived")
FORMATS: tuple[str, ...] = FORMAT_NAMES
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
ROLES: tuple[str, ...] = ("device", "cloud")

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
VARIANT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True)
class AppInfo:
    """An app (tenant) as seen from outside the store.

    ``public_keys`` maps every signing key id of the app that packages may be signed with
    (the active one and retired, verify-only ones; never a revoked one) to its base64 raw
    Ed25519 public key. ``keyring`` is the newest signed keyring in its JSON form
    (``pocketml.protect.Keyring``), or None for an app migrated from before keyrings
    until ``Registry.get_app`` issues its first; ``keyring_chain`` the keyrings before it
    (oldest first, at most 16) for devices that must walk forward from an older pin.
    """

    id: str
    name: str
    created_at: datetime
    signing_key_id: str
    public_keys: dict[str, str]
    keyring: dict[str, Any] | None = None
    keyring_chain: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class KeyringChange:
    """The outcome of a signing-key rotation or revocation.

    Attributes:
        keyring: the new signed keyring, JSON form (what check-in now publishes).
        resigned: ``(model, version, variant, old package id, new package id)`` of every
            package rebuilt because its signing key was revoked.
    """

    keyring: dict[str, Any]
    resigned: tuple[tuple[str, int, str, str, str], ...] = ()


@dataclass(frozen=True)
class AppCreated:
    """A new app with its credentials; the tokens are shown once and stored only hashed."""

    app: AppInfo
    admin_token: str
    device_key: str


@dataclass(frozen=True)
class Principal:
    """Who is calling: the app a credential belongs to and its role."""

    app_id: str
    role: Literal["admin", "device", "operator"]


@dataclass(frozen=True)
class ModelInfo:
    """A model of an app, with its latest and production version numbers (or None)."""

    id: str
    app_id: str
    name: str
    description: str
    schema: dict[str, Any]
    created_at: datetime
    latest_version: int | None
    production_version: int | None


@dataclass(frozen=True)
class VariantInfo:
    """One built file of a version and the package a device downloads for it."""

    id: str
    name: str
    format: str
    precision: str
    role: str
    size: int
    sha256: str
    package_id: str
    package_size: int
    signing_key_id: str
    content_key_id: str | None
    compatibility: dict[str, Any]
    metrics: dict[str, Any]
    benchmarks: dict[str, Any]
    profiles: list[str]
    created_at: datetime


@dataclass(frozen=True)
class VersionInfo:
    """An immutable model version: lineage, model card, stage and its variants.

    ``reference_profile_sha256`` is the sha256 of the version's reference profile (the
    canonical JSON that is also every package's ``profile.json`` member), or None without
    one; the profile itself is read with ``Registry.get_reference_profile``.
    """

    id: str
    model: str
    version: int
    stage: str
    dataset_fingerprint: str | None
    parent_version: int | None
    source_framework: str | None
    params: dict[str, Any]
    metrics: dict[str, Any]
    run_record: dict[str, Any]
    card: str
    created_at: datetime
    variants: tuple[VariantInfo, ...]
    reference_profile_sha256: str | None = None

    @property
    def has_profile(self) -> bool:
        """True when the version was pushed with a reference profile."""
        return self.reference_profile_sha256 is not None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: the items, the total number of matches, and the window."""

    items: tuple[T, ...]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class StoredPackage:
    """Where a package lives in the ArtifactStore: its key, size and sha256 (= its id).

    Not the manifest's package reference (``pocketml.device.PackageRef``): this one is the
    server's storage location of the file.
    """

    key: str
    size: int
    sha256: str


# ---------------------------------------------------------------- inputs


class _Input(Bounded):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantUpload(_Input):
    """The metadata of one variant in a push; its file travels next to it."""

    name: str = Field(
        pattern=VARIANT_NAME_PATTERN,
        description="Variant name, unique in the version (letters, digits, _ . -).",
        examples=["onnx-fp32"],
    )
    format: Format = Field(description="File format of the model file.")
    precision: Precision = Field(description="Numeric precision of the weights.")
    role: Role = Field("device", description="Runs on devices or in the cloud.")
    sha256: str | None = Field(
        None, pattern=SHA256_PATTERN, description="Expected sha256 hex of the model file."
    )
    compatibility: JsonObject = Field(
        default_factory=dict,
        description="{opset, spec_version, min_runtime, min_os, operators: [..]}.",
    )
    metrics: JsonObject = Field(default_factory=dict, description="e.g. {accuracy}.")
    benchmarks: JsonObject = Field(default_factory=dict, description="Per profile.")
    profiles: list[Annotated[Text, Field(max_length=64)]] = Field(
        default_factory=list,
        max_length=100,
        description="Device profiles this variant was chosen for.",
    )
    encrypt: bool = Field(False, description="Encrypt the model inside the package.")


class VersionCreate(_Input):
    """The metadata of a push: lineage, model card and the variants (at least one)."""

    version: VersionNumber | None = Field(None, description="Version number; default: latest + 1.")
    dataset_fingerprint: Annotated[Text, Field(max_length=200)] | None = None
    parent_version: VersionNumber | None = None
    source_framework: Annotated[Text, Field(max_length=100)] | None = None
    params: JsonObject = Field(default_factory=dict)
    metrics: JsonObject = Field(default_factory=dict)
    run_record: JsonObject = Field(default_factory=dict)
    card: Text = Field("", max_length=1_000_000, description="Model card, Markdown.")
    variants: list[VariantUpload] = Field(min_length=1, max_length=64)
    reference_profile: JsonObject | None = Field(
        None,
        description=(
            "The version's reference profile (pocketml.sketch's ReferenceProfile JSON, "
            "build.json's profile.json): stored with the version and shipped as the "
            "signed profile.json member of every package."
        ),
    )
    force: bool = Field(
        False,
        description=(
            "Store the version even when an existing version of the model has exactly the "
            "same model files (the same set of variant sha256s); without it such a push is "
            "refused with 409 naming that version."
        ),
    )

    @model_validator(mode="after")
    def _check_unique_variant_names(self) -> VersionCreate:
        names = [variant.name for variant in self.variants]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"variant names must be unique within a version; got {duplicates} more "
                "than once. Give each variant its own name."
            )
        return self


with warnings.catch_warnings():
    # ``schema`` is the contract's field name; it shadows the deprecated BaseModel.schema().
    warnings.filterwarnings("ignore", message=".*shadows an attribute.*")

    class ModelCreate(_Input):
        """A new model: name unique in the app, description, ModelSchema JSON."""

        name: str = Field(
            pattern=MODEL_NAME_PATTERN,
            description="Lower-case letters, digits, _ and -, at most 64 characters.",
            examples=["digits"],
        )
        description: Text = Field("", max_length=2000)
        schema: JsonObject = Field(  # type: ignore[assignment]
            description="The ModelSchema JSON (inputs, outputs, preprocessing)."
        )
