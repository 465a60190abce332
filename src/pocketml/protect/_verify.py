"""Verifying a package: the checks a device runs before it trusts a downloaded model.

Order (each failure has its own error class, see ``_errors``):

1. structure  - a readable zip of at most ``MAX_MEMBERS`` members (so never ZIP64), safe
                unique names, manifest.json and manifest.sig present, the canonical zip
                layout (no bytes added, removed or moved);
2. signature  - the manifest's signing key id is trusted and its Ed25519 signature holds;
3. manifest   - format, format_version and every field well-formed;
4. app        - the manifest names the expected app;
5. members    - exactly the listed members are present, each with its size and sha256.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.errors import InvalidInput, NotFound
from pocketml.protect._errors import (
    MalformedPackage,
    MemberHashMismatch,
    MissingMember,
    SignatureInvalid,
    UnexpectedMember,
    UnsignedPackage,
    UntrustedKey,
    WrongApp,
)
from pocketml.protect._keys import signing_key_id, verify_signature
from pocketml.protect._manifest import (
    MANIFEST_NAME,
    PROFILE_MEMBER,
    SIGNATURE_NAME,
    check_manifest,
    is_safe_member_name,
    peek_signing_key_id,
)
from pocketml.protect._zipio import check_layout, iter_member, open_zip

__all__ = [
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "VerifiedPackage",
    "hash_member",
    "verify_package",
]

MAX_MANIFEST_BYTES = 1 << 20
# A package holds the model, schema.json, card.md, manifest.json and manifest.sig; the
# bound leaves room for growth and keeps a hostile zip (65,536+ members, ZIP64) cheap to refuse.
MAX_MEMBERS = 256
# Larger than a signature on purpose: a wrong length is a SignatureInvalid, not a read error.
MAX_SIGNATURE_BYTES = 1024


@dataclass(frozen=True)
class VerifiedPackage:
    """A package that passed :func:`verify_package`.

    Attributes:
        path: the package file.
        manifest: the signed manifest, as a dict.
        signing_key_id: the id of the trusted key that signed it.
    """

    path: Path
    manifest: dict[str, Any]
    signing_key_id: str

    @property
    def model_member(self) -> str:
        """The name of the model member (``model.onnx``, ``model.tflite.enc``, ...)."""
        return str(self.manifest["model_member"])

    @property
    def has_profile(self) -> bool:
        """True when the package ships the version's reference profile (``profile.json``)."""
        return PROFILE_MEMBER in self.manifest["members"]

    @property
    def is_encrypted(self) -> bool:
        """True when the model member is AES-256-GCM ciphertext."""
        return self.manifest["encryption"] is not None

    @property
    def content_key_id(self) -> str | None:
        """The id of the content key that decrypts the model, or None when not encrypted."""
        encryption = self.manifest["encryption"]
        return None if encryption is None else str(encryption["key_id"])


def verify_package(
    path: Path, *, trusted_keys: Mapping[str, bytes], app_id: str
) -> VerifiedPackage:
    """Check a package's structure, signature, app and every member hash.

    Args:
        path: the package file.
        trusted_keys: ``{key_id: raw 32-byte Ed25519 public key}`` of every key the caller
            trusts; keep retired keys here while their packages are still in use.
        app_id: the app this package must belong to.

    Returns:
        A VerifiedPackage for :func:`extract_model` and :func:`read_member`.

    Raises:
        NotFound: ``path`` does not exist.
        InvalidInput: ``trusted_keys`` maps an id to a key whose id differs.
        MalformedPackage, UnsignedPackage, UntrustedKey, SignatureInvalid, WrongApp,
            MissingMember, UnexpectedMember, MemberHashMismatch: the check that failed
            (all are ``pocketml.errors.IntegrityError``).
    """
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"package file {str(path)!r} does not exist. Check the path.")
    with open_zip(path) as archive:
        infos = _check_structure(archive, path)
        manifest_bytes = _read_small(archive, infos[MANIFEST_NAME], MAX_MANIFEST_BYTES)
        signature = _read_small(archive, infos[SIGNATURE_NAME], MAX_SIGNATURE_BYTES)
        key_id = _check_signature(manifest_bytes, signature, trusted_keys)
        manifest = check_manifest(manifest_bytes)
        if manifest["app_id"] != app_id:
            raise WrongApp(
                f"this package is for app {manifest['app_id']!r}, not {app_id!r}. "
                "The server sent another app's package: do not use it."
            )
        _check_members(archive, infos, manifest["members"])
    return VerifiedPackage(path=path, manifest=manifest, signing_key_id=key_id)


def hash_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, entry: Mapping[str, Any]) -> None:
    """Stream one member and compare its size and sha256 with its manifest entry.

    Raises:
        MemberHashMismatch: the size or the sha256 differs, or the bytes are corrupt.
    """
    if info.file_size != entry["size"]:
        raise MemberHashMismatch(
            f"package member {info.filename!r} is {info.file_size} bytes; the signed manifest "
            f"says {entry['size']}. The package was modified: do not use it."
        )
    hasher = hashlib.sha256()
    for chunk in iter_member(archive, info, entry["size"]):
        hasher.update(chunk)
    if hasher.hexdigest() != entry["sha256"]:
        raise MemberHashMismatch(
            f"package member {info.filename!r} has sha256 {hasher.hexdigest()}; the signed "
            f"manifest says {entry['sha256']}. The package was modified: do not use it."
        )


def _check_structure(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise MalformedPackage(
            f"package holds {len(infos)} members; a pocketml package has at most "
            f"{MAX_MEMBERS} (and never needs ZIP64 records): do not use it."
        )
    names = [info.filename for info in infos]
    unsafe = [name for name in names if not is_safe_member_name(name)]
    if unsafe:
        raise MalformedPackage(
            f"package holds unsafe member names {_shown(unsafe)} (absolute paths, '..', "
            "folders or unusual characters); it may try to write outside its folder: do not "
            "use it."
        )
    if len(set(names)) != len(names):
        raise MalformedPackage(f"package holds a member name twice: {_shown(sorted(names))}.")
    if MANIFEST_NAME not in names:
        raise MalformedPackage(
            f"package has no {MANIFEST_NAME}; it is not a pocketml package "
            f"(members: {_shown(names)})."
        )
    if SIGNATURE_NAME not in names:
        raise UnsignedPackage(
            f"package has no {SIGNATURE_NAME}: it is unsigned, and unsigned packages are "
            "never trusted. Build it with a signing key (pocketml.protect.build_package)."
        )
    try:
        with path.open("rb") as handle:
            check_layout(handle, path.stat().st_size, infos)
    except OSError as exc:
        raise MalformedPackage(f"cannot read package file {str(path)!r}: {exc}") from exc
    return {info.filename: info for info in infos}


def _shown(names: list[str], limit: int = 10) -> str:
    """At most ``limit`` names for a message (a hostile zip may hold thousands)."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{names[:limit]!r}{more}"


def _read_small(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    if info.file_size > limit:
        raise MalformedPackage(
            f"package member {info.filename!r} is {info.file_size} bytes; at most {limit} "
            "are allowed."
        )
    try:
        return b"".join(iter_member(archive, info, limit))
    except MemberHashMismatch as exc:
        raise MalformedPackage(f"package member {info.filename!r} is corrupt: {exc}") from exc


def _check_signature(
    manifest_bytes: bytes, signature: bytes, trusted_keys: Mapping[str, bytes]
) -> str:
    key_id = peek_signing_key_id(manifest_bytes)
    if key_id is None:
        # Nothing names the key: the manifest bytes were changed, unless a trusted key
        # really signed them (then the signer wrote a broken manifest).
        for public in trusted_keys.values():
            try:
                verify_signature(public, manifest_bytes, signature)
            except SignatureInvalid:
                continue
            raise MalformedPackage("the signed manifest has no signing_key_id field.")
        raise SignatureInvalid(
            "manifest.json is not a manifest any trusted key signed (it does not parse or "
            "names no key). The package was modified: do not use it."
        )
    if key_id not in trusted_keys:
        raise UntrustedKey(
            f"package is signed by key {key_id!r}, which is not trusted (trusted: "
            f"{sorted(trusted_keys)}). If the key was rotated, add its public key to the "
            "trusted keys; otherwise do not use the package."
        )
    public = trusted_keys[key_id]
    actual_id = signing_key_id(public)
    if actual_id != key_id:
        raise InvalidInput(
            f"trusted_keys maps {key_id!r} to a public key whose id is {actual_id!r}. "
            "Build the mapping as {signing_key_id(public): public}."
        )
    verify_signature(public, manifest_bytes, signature)
    return key_id


def _check_members(
    archive: zipfile.ZipFile,
    infos: Mapping[str, zipfile.ZipInfo],
    members: Mapping[str, Any],
) -> None:
    present = set(infos) - {MANIFEST_NAME, SIGNATURE_NAME}
    missing = sorted(set(members) - present)
    if missing:
        raise MissingMember(
            f"package lacks member(s) {missing} that its signed manifest lists. "
            "The package was modified or cut: download it again."
        )
    unexpected = sorted(present - set(members))
    if unexpected:
        raise UnexpectedMember(
            f"package holds member(s) {unexpected} that its signed manifest does not list. "
            "Something was added after signing: do not use it."
        )
    for name in sorted(members):
        hash_member(archive, infos[name], members[name])
