"""Building a package: one signed zip holding a model (optionally encrypted) and its metadata.

Members, in write order: the model (``model.<ext>`` or ``model.<ext>.enc``), ``schema.json``,
``card.md``, ``profile.json`` (the version's reference profile for drift monitoring, only
when the version has one), ``manifest.json`` (canonical JSON naming every other member's
sha256 and size) and ``manifest.sig`` (the 64-byte Ed25519 signature of the manifest
bytes). The model is hashed and encrypted in 1 MiB chunks, so its size never matters for
memory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pocketml.errors import InvalidInput, NotFound
from pocketml.protect._keys import GCM_NONCE_BYTES, ContentKey, SigningKey
from pocketml.protect._manifest import (
    ENCRYPTION_ALGORITHM,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MODEL_EXTENSIONS,
    PROFILE_MEMBER,
    SIGNATURE_NAME,
    canonical_json,
)
from pocketml.protect._zipio import CHUNK_SIZE, make_zip_info
from pocketml.protocol import file_sha256

__all__ = ["MAX_MODEL_BYTES", "PackageInfo", "build_package"]

# Keeps every package below the 2 GiB where zip needs ZIP64 records (format version 1).
MAX_MODEL_BYTES = 2_000_000_000
GCM_TAG_BYTES = 16


@dataclass(frozen=True)
class PackageInfo:
    """A package file that was just built.

    Attributes:
        path: where the package is.
        sha256: hex sha256 of the whole package file (what check-in manifests announce).
        size: size of the package file in bytes.
        manifest: the signed manifest, as a dict.
    """

    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]


@dataclass(frozen=True)
class _ModelMember:
    name: str
    sha256: str
    size: int
    plain_sha256: str
    plain_size: int
    nonce: bytes | None


def build_package(
    model_file: Path,
    out_path: Path,
    *,
    app_id: str,
    model: str,
    version: int,
    variant: str,
    model_format: str,
    precision: str,
    schema: dict[str, Any],
    card: str,
    signing_key: SigningKey,
    content_key: ContentKey | None = None,
    extra: dict[str, Any] | None = None,
    profile: Mapping[str, Any] | None = None,
) -> PackageInfo:
    """Build a signed (and, with ``content_key``, encrypted) package from a model file.

    The package is written to a temporary file next to ``out_path`` and renamed into place,
    so ``out_path`` is either absent, the old file, or the complete new package.

    Args:
        model_file: the model (.onnx, .ort, .tflite, .mlmodel, or a zipped .mlpackage).
        out_path: where to write the package (parent folders are created).
        app_id: the app the package is for; devices of other apps reject it.
        model: the model name ("digits").
        version: the model version, an int >= 1.
        variant: the variant name ("tflite-int8").
        model_format: one of onnx, ort, tflite, coreml.
        precision: e.g. fp32, fp16, int8.
        schema: the model schema as a JSON dict (stored as canonical JSON).
        card: the model card in Markdown.
        signing_key: the Ed25519 key that signs the manifest.
        content_key: when given, the model member is AES-256-GCM encrypted with it.
        extra: free JSON data recorded in the manifest.
        profile: the version's reference profile as JSON (``ReferenceProfile.to_dict()``);
            stored as the ``profile.json`` member (canonical JSON), hashed in the manifest
            and so covered by the signature. None: no such member.

    Returns:
        A PackageInfo with the file's sha256, size and the manifest.

    Raises:
        InvalidInput: an argument has the wrong type or value, or the model is too large.
        NotFound: ``model_file`` does not exist.
    """
    _check_names(app_id=app_id, model=model, variant=variant, precision=precision)
    _check_types(version=version, schema=schema, card=card, extra=extra, keys=signing_key)
    if content_key is not None and not isinstance(content_key, ContentKey):
        raise InvalidInput(f"content_key must be a ContentKey; got {type(content_key).__name__}.")
    member_name = _model_member_name(Path(model_file), model_format, content_key is not None)
    schema_bytes, card_bytes = canonical_json(dict(schema)), card.encode("utf-8")
    extra_dict = dict(extra or {})
    canonical_json(extra_dict)  # fail before any work when extra is not JSON
    if profile is not None and not isinstance(profile, Mapping):
        raise InvalidInput(
            f"profile must be a dict (ReferenceProfile.to_dict()) or None; "
            f"got {type(profile).__name__}."
        )
    profile_bytes = None if profile is None else canonical_json(dict(profile))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with zipfile.ZipFile(tmp, "x") as archive:
            entry = _write_model(archive, Path(model_file), member_name, content_key)
            _write_bytes(archive, "schema.json", schema_bytes)
            _write_bytes(archive, "card.md", card_bytes)
            if profile_bytes is not None:
                _write_bytes(archive, PROFILE_MEMBER, profile_bytes)
            manifest: dict[str, Any] = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "app_id": app_id,
                "model": model,
                "version": version,
                "variant": variant,
                "model_format": model_format,
                "precision": precision,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "signing_key_id": signing_key.key_id,
                "members": {
                    entry.name: {"sha256": entry.sha256, "size": entry.size},
                    "schema.json": _digest(schema_bytes),
                    "card.md": _digest(card_bytes),
                    **(
                        {PROFILE_MEMBER: _digest(profile_bytes)}
                        if profile_bytes is not None
                        else {}
                    ),
                },
                "model_member": entry.name,
                "model_sha256": entry.plain_sha256,
                "model_size": entry.plain_size,
                "encryption": _encryption_field(content_key, entry.nonce),
                "extra": extra_dict,
            }
            manifest_bytes = canonical_json(manifest)
            _write_bytes(archive, MANIFEST_NAME, manifest_bytes)
            _write_bytes(archive, SIGNATURE_NAME, signing_key.sign(manifest_bytes))
        _fsync(tmp)
        digest, size = file_sha256(tmp), tmp.stat().st_size
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return PackageInfo(path=out_path, sha256=digest, size=size, manifest=manifest)


def _write_model(
    archive: zipfile.ZipFile, model_file: Path, name: str, content_key: ContentKey | None
) -> _ModelMember:
    plain_size = model_file.stat().st_size
    if plain_size > MAX_MODEL_BYTES:
        raise InvalidInput(
            f"a package holds a model of at most {MAX_MODEL_BYTES} bytes; "
            f"{str(model_file)!r} has {plain_size}. Quantize or split the model."
        )
    nonce = os.urandom(GCM_NONCE_BYTES) if content_key is not None else None
    encryptor = None
    if content_key is not None and nonce is not None:
        encryptor = Cipher(algorithms.AES(content_key.secret), modes.GCM(nonce)).encryptor()
    member_size = plain_size + (GCM_TAG_BYTES if encryptor is not None else 0)
    plain_hash, member_hash, seen = hashlib.sha256(), hashlib.sha256(), 0
    with model_file.open("rb") as src, archive.open(make_zip_info(name, member_size), "w") as dst:
        while chunk := src.read(CHUNK_SIZE):
            seen += len(chunk)
            plain_hash.update(chunk)
            out = encryptor.update(chunk) if encryptor is not None else chunk
            member_hash.update(out)
            dst.write(out)
        if encryptor is not None:
            tail = encryptor.finalize() + encryptor.tag  # GCM: tag after the ciphertext
            member_hash.update(tail)
            dst.write(tail)
    if seen != plain_size:
        raise InvalidInput(
            f"model file {str(model_file)!r} changed size while it was being packaged "
            f"({plain_size} -> {seen} bytes); wait for the writer to finish and build again."
        )
    return _ModelMember(
        name=name,
        sha256=member_hash.hexdigest(),
        size=member_size,
        plain_sha256=plain_hash.hexdigest(),
        plain_size=plain_size,
        nonce=nonce,
    )


def _write_bytes(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    with archive.open(make_zip_info(name, len(data)), "w") as dst:
        dst.write(data)


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _encryption_field(key: ContentKey | None, nonce: bytes | None) -> dict[str, str] | None:
    if key is None or nonce is None:
        return None
    return {
        "algorithm": ENCRYPTION_ALGORITHM,
        "key_id": key.key_id,
        "nonce": base64.b64encode(nonce).decode("ascii"),
    }


def _model_member_name(model_file: Path, model_format: str, encrypted: bool) -> str:
    if model_format not in MODEL_EXTENSIONS:
        raise InvalidInput(
            f"model_format must be one of {sorted(MODEL_EXTENSIONS)}; got {model_format!r}."
        )
    if model_file.is_dir():
        raise InvalidInput(
            f"model_file must be a file; {str(model_file)!r} is a folder. Zip a Core ML "
            ".mlpackage folder into <name>.mlpackage.zip and package that file."
        )
    if not model_file.is_file():
        raise NotFound(f"model file {str(model_file)!r} does not exist. Check the path.")
    ext = MODEL_EXTENSIONS[model_format][0]
    if model_format == "coreml":
        if model_file.name.endswith(".zip"):
            ext = "mlpackage.zip"
        elif not model_file.name.endswith(".mlmodel"):
            raise InvalidInput(
                f"a Core ML model must be a .mlmodel file or a zipped .mlpackage (.zip); "
                f"got {model_file.name!r}."
            )
    return f"model.{ext}" + (".enc" if encrypted else "")


def _check_names(**names: object) -> None:
    for field, value in names.items():
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"{field} must be a non-empty str; got {value!r}.")


def _check_types(
    *, version: object, schema: object, card: object, extra: object, keys: object
) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InvalidInput(f"version must be an int >= 1; got {version!r}.")
    if not isinstance(schema, Mapping):
        raise InvalidInput(f"schema must be a dict (the schema's JSON); got {type(schema)}.")
    if not isinstance(card, str):
        raise InvalidInput(f"card must be a Markdown str; got {type(card).__name__}.")
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidInput(f"extra must be a dict or None; got {type(extra).__name__}.")
    if not isinstance(keys, SigningKey):
        raise InvalidInput(f"signing_key must be a SigningKey; got {type(keys).__name__}.")


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
