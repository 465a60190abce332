"""The package manifest: its canonical JSON bytes and the checks on its fields.

The manifest is the only signed thing in a package; everything else is bound to it by
sha256. It is serialised canonically (sorted keys, no spaces, ASCII only) so the same
inputs always give the same bytes, and a verifier refuses any other spelling.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from pocketml.errors import InvalidInput
from pocketml.protect._errors import MalformedPackage
from pocketml.protocol import FORMATS

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "MODEL_EXTENSIONS",
    "PROFILE_MEMBER",
    "SIGNATURE_NAME",
    "canonical_json",
    "check_manifest",
    "decode_nonce",
    "is_safe_member_name",
    "peek_signing_key_id",
]

FORMAT = "pocketml-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
# The optional member holding the version's reference profile (pocketml.sketch's JSON):
# what a device bins its inputs against. Packages built before it simply lack it.
PROFILE_MEMBER = "profile.json"
ENCRYPTION_ALGORITHM = "AES-256-GCM"
# model_format -> accepted model file extensions (the member is "model.<ext>[.enc]").
MODEL_EXTENSIONS: dict[str, tuple[str, ...]] = {
    name: fmt.extensions for name, fmt in FORMATS.items()
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "app_id": str,
    "model": str,
    "version": int,
    "variant": str,
    "model_format": str,
    "precision": str,
    "created_at": str,
    "signing_key_id": str,
    "members": dict,
    "model_member": str,
    "model_sha256": str,
    "model_size": int,
    "encryption": (dict, type(None)),
    "extra": dict,
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` canonically: sorted keys, no spaces, ASCII, no NaN.

    Args:
        value: JSON-compatible data (dicts with str keys, lists, str, int, float, bool, None).

    Returns:
        The UTF-8 (in fact ASCII) bytes.

    Raises:
        InvalidInput: the value holds something JSON cannot represent.
    """
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"package metadata must be plain JSON (dict, list, str, int, float, bool, None) "
            f"without NaN or infinity; {exc}. Convert the value before building."
        ) from exc
    return text.encode("ascii")


def is_safe_member_name(name: str) -> bool:
    """Return True for a flat, portable member name (no slash, no ``..``, no drive)."""
    return bool(_SAFE_NAME.fullmatch(name)) and ".." not in name


def peek_signing_key_id(manifest_bytes: bytes) -> str | None:
    """Return the ``signing_key_id`` of not-yet-verified manifest bytes, or None.

    Only used to pick the public key; nothing else is trusted before the signature.
    """
    try:
        data = json.loads(manifest_bytes)
    except (ValueError, RecursionError):  # RecursionError: hostile deep nesting
        return None
    key_id = data.get("signing_key_id") if isinstance(data, dict) else None
    return key_id if isinstance(key_id, str) else None


def check_manifest(manifest_bytes: bytes) -> dict[str, Any]:
    """Parse signed manifest bytes and check every field's type and consistency.

    Returns:
        The manifest as a dict.

    Raises:
        MalformedPackage: not canonical JSON, an unknown format or version, a missing or
            mistyped field, an unsafe member name, or inconsistent encryption fields.
    """
    try:
        manifest = json.loads(manifest_bytes, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise MalformedPackage(f"manifest.json is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise MalformedPackage("manifest.json must hold a JSON object; got another value.")
    _check_format(manifest)
    try:
        canonical = canonical_json(manifest)
    except InvalidInput as exc:  # NaN or Infinity, which JSON parsers accept
        raise MalformedPackage(f"manifest.json holds a non-JSON number: {exc}") from exc
    if canonical != manifest_bytes:
        raise MalformedPackage(
            "manifest.json is not in canonical form (sorted keys, no spaces, ASCII)."
        )
    _check_fields(manifest)
    _check_members(manifest)
    _check_encryption(manifest)
    return manifest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys in a JSON object: {sorted(keys)}")
    return dict(pairs)


def _check_format(manifest: Mapping[str, Any]) -> None:
    if manifest.get("format") != FORMAT:
        raise MalformedPackage(
            f"manifest format must be {FORMAT!r}; got {manifest.get('format')!r}. "
            "This file is not a pocketml package."
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise MalformedPackage(
            f"package format_version must be {FORMAT_VERSION}; got {version!r}. "
            "Upgrade pocketml (or the app's SDK) to read newer packages."
        )


def _check_fields(manifest: Mapping[str, Any]) -> None:
    for name, kind in _REQUIRED.items():
        value = manifest.get(name)
        if name not in manifest or not isinstance(value, kind) or isinstance(value, bool):
            raise MalformedPackage(
                f"manifest field {name!r} must be {_kind_name(kind)}; got {value!r}."
            )
    if manifest["model_format"] not in MODEL_EXTENSIONS:
        raise MalformedPackage(
            f"manifest model_format must be one of {sorted(MODEL_EXTENSIONS)}; "
            f"got {manifest['model_format']!r}."
        )
    if not _HEX64.fullmatch(manifest["model_sha256"]) or manifest["model_size"] < 0:
        raise MalformedPackage("manifest model_sha256/model_size are not a sha256 and a size.")
    unknown = set(manifest) - set(_REQUIRED)
    if unknown:
        raise MalformedPackage(
            f"manifest has unknown fields {sorted(unknown)}; put free data under 'extra'."
        )


def _check_members(manifest: Mapping[str, Any]) -> None:
    members = manifest["members"]
    for name, entry in members.items():
        if not is_safe_member_name(name) or name in (MANIFEST_NAME, SIGNATURE_NAME):
            raise MalformedPackage(f"manifest lists an unsafe or reserved member name {name!r}.")
        if (
            not isinstance(entry, dict)
            or set(entry) != {"sha256", "size"}
            or not isinstance(entry["sha256"], str)
            or not _HEX64.fullmatch(entry["sha256"])
            or not isinstance(entry["size"], int)
            or isinstance(entry["size"], bool)
            or entry["size"] < 0
        ):
            raise MalformedPackage(
                f"manifest entry of member {name!r} must be "
                f'{{"sha256": <64 hex>, "size": <int >= 0>}}; got {entry!r}.'
            )
    model_member = manifest["model_member"]
    if model_member not in members:
        raise MalformedPackage(
            f"manifest model_member {model_member!r} is not among its members {sorted(members)}."
        )
    suffix = ".enc" if manifest["encryption"] is not None else ""
    expected = [f"model.{ext}{suffix}" for ext in MODEL_EXTENSIONS[manifest["model_format"]]]
    if model_member not in expected:
        raise MalformedPackage(
            f"manifest model_member must be one of {expected} for this format and "
            f"encryption; got {model_member!r}."
        )


def _check_encryption(manifest: Mapping[str, Any]) -> None:
    encryption = manifest["encryption"]
    if encryption is None:
        if manifest["members"][manifest["model_member"]]["size"] != manifest["model_size"]:
            raise MalformedPackage("manifest model_size differs from the model member's size.")
        return
    fields_ok = (
        set(encryption) == {"algorithm", "key_id", "nonce"}
        and encryption["algorithm"] == ENCRYPTION_ALGORITHM
        and isinstance(encryption["key_id"], str)
        and bool(encryption["key_id"])
        and isinstance(encryption["nonce"], str)
    )
    if not fields_ok:
        raise MalformedPackage(
            f'manifest encryption must be {{"algorithm": "{ENCRYPTION_ALGORITHM}", '
            f'"key_id": <str>, "nonce": <base64 of 12 bytes>}}; got {encryption!r}.'
        )
    try:
        nonce = base64.b64decode(encryption["nonce"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedPackage("manifest encryption nonce is not base64.") from exc
    if len(nonce) != 12:
        raise MalformedPackage(f"manifest encryption nonce must be 12 bytes; got {len(nonce)}.")
    if manifest["members"][manifest["model_member"]]["size"] != manifest["model_size"] + 16:
        raise MalformedPackage(
            "an encrypted model member must be model_size + 16 bytes (ciphertext and tag)."
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


def decode_nonce(manifest: Mapping[str, Any]) -> bytes:
    """Return the 12-byte GCM nonce of a checked, encrypted manifest."""
    return base64.b64decode(manifest["encryption"]["nonce"])
