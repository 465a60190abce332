"""Pydantic models of the signing-key API: the keyring and a revocation.

The keyring's meaning (what a device does with it) is documented once, in docs/packages.md
("Signing keys: rotation and revocation"); these models only describe its JSON shape for
the OpenAPI document and the ``AdminClient``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["KeyRevokeRequest", "KeyRevokedPublic", "KeyringPublic", "ResignedPackage"]

KEY_ID_PATTERN = r"^ed25519:[0-9a-f]{16}$"
_KEY = "ed25519:1a2b3c4d5e6f7a8b"


class KeyringPublic(BaseModel):
    """An app's signed keyring: the package-signing keys devices may trust."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "app_id": "app_3b1f0c",
                    "sequence": 2,
                    "issued_at": "2026-12-04T18:00:00Z",
                    "active": _KEY,
                    "keys": {_KEY: "base64-raw-ed25519-public-key"},
                    "revoked": ["ed25519:9f8e7d6c5b4a3921"],
                    "signatures": {_KEY: "base64-ed25519-signature"},
                }
            ]
        },
    )

    app_id: str
    sequence: int = Field(description="Grows by one with every key change; devices only move up.")
    issued_at: str = Field(description="When the server issued it (ISO 8601 UTC).")
    active: str = Field(description="Id of the key that signs new packages.")
    keys: dict[str, str] = Field(
        description="Key id -> base64 raw Ed25519 public key: every key packages may be "
        "signed with (the active one and retired, verify-only ones)."
    )
    revoked: list[str] = Field(description="Ids of keys that are never trusted again.")
    signatures: dict[str, str] = Field(
        description="Key id -> base64 Ed25519 signature over 'pocketml-keyring-v1\\x00' + the "
        "canonical JSON of every other field."
    )


class KeyRevokeRequest(BaseModel):
    """Body of ``POST /v1/admin/app/keys/revoke``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key_id": _KEY, "reason": "laptop stolen"}]},
    )

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="A retired signing key of the app.")
    reason: str = Field("", max_length=500, description="Why (kept in the audit log).")


class ResignedPackage(BaseModel):
    """A variant whose package was rebuilt and signed by the active key."""

    model: str
    version: int
    variant: str
    old_package_id: str
    new_package_id: str


class KeyRevokedPublic(BaseModel):
    """The outcome of a revocation: the new keyring and the re-signed packages."""

    keyring: KeyringPublic
    resigned: list[ResignedPackage]

    @classmethod
    def of(cls, keyring: dict[str, Any], resigned: Any) -> KeyRevokedPublic:
        """Build from a registry ``KeyringChange``'s fields."""
        names = ("model", "version", "variant", "old_package_id", "new_package_id")
        return cls(
            keyring=KeyringPublic.model_validate(keyring),
            resigned=[ResignedPackage(**dict(zip(names, item, strict=True))) for item in resigned],
        )
