"""Reading a verified package: stream the model out (decrypting it), read small members.

The package file is read again here, so every byte is checked again on the way out: the
member sha256, the GCM tag and the plaintext sha256. A package swapped on disk between
:func:`verify_package` and extraction is therefore still caught.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pocketml.errors import InvalidInput, NotFound
from pocketml.protect._errors import (
    ContentKeyRequired,
    DecryptionFailed,
    MemberHashMismatch,
    MissingMember,
)
from pocketml.protect._keys import AES_KEY_BYTES, ContentKey
from pocketml.protect._manifest import decode_nonce
from pocketml.protect._package import GCM_TAG_BYTES
from pocketml.protect._verify import VerifiedPackage, hash_member
from pocketml.protect._zipio import iter_member, open_zip

__all__ = ["extract_model", "read_member"]


def extract_model(
    verified: VerifiedPackage, out_path: Path, *, content_key: bytes | ContentKey | None = None
) -> Path:
    """Write the model of a verified package to ``out_path``, decrypting it when needed.

    The model streams through a temporary file next to ``out_path`` that is renamed into
    place only after the GCM tag and the plaintext sha256 both check out; on any failure
    the partial output is deleted.

    Args:
        verified: the result of :func:`verify_package`.
        out_path: where to write the plaintext model.
        content_key: the 32-byte AES key (or ContentKey) of an encrypted package.

    Returns:
        ``out_path``.

    Raises:
        ContentKeyRequired: the package is encrypted and no key was given.
        InvalidInput: the key is not 32 bytes, or a ContentKey with another id.
        DecryptionFailed: the key is wrong or the ciphertext or tag was modified.
        MemberHashMismatch, MissingMember, MalformedPackage: the file changed since it
            was verified.
    """
    manifest = verified.manifest
    secret = _content_secret(verified, content_key)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(6)}.part")
    try:
        plain_hash, plain_size = hashlib.sha256(), 0
        with tmp.open("wb") as sink:
            for chunk in _plaintext_chunks(verified, secret):
                plain_hash.update(chunk)
                plain_size += len(chunk)
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        if plain_hash.hexdigest() != manifest["model_sha256"] or (
            plain_size != manifest["model_size"]
        ):
            raise MemberHashMismatch(
                f"the extracted model has sha256 {plain_hash.hexdigest()} ({plain_size} "
                f"bytes); the signed manifest says {manifest['model_sha256']} "
                f"({manifest['model_size']} bytes). Do not use this package."
            )
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def read_member(verified: VerifiedPackage, name: str) -> bytes:
    """Return the bytes of a small member (``schema.json``, ``card.md``), re-checking its hash.

    Args:
        verified: the result of :func:`verify_package`.
        name: the member name.

    Returns:
        The member's bytes.

    Raises:
        NotFound: the manifest lists no such member.
        InvalidInput: ``name`` is the model member (use :func:`extract_model`).
        MemberHashMismatch, MissingMember, MalformedPackage: the file changed since it
            was verified.
    """
    members = verified.manifest["members"]
    if name == verified.model_member:
        raise InvalidInput(
            f"{name!r} is the model member; stream it with extract_model(), not read_member()."
        )
    if name not in members:
        raise NotFound(f"package has no member {name!r}; it has {sorted(members)}.")
    with open_zip(verified.path) as archive:
        info = _member_info(archive, name)
        hash_member(archive, info, members[name])
        return b"".join(iter_member(archive, info, members[name]["size"]))


def _content_secret(verified: VerifiedPackage, key: bytes | ContentKey | None) -> bytes | None:
    key_id = verified.content_key_id
    if key_id is None:
        return None
    if key is None:
        raise ContentKeyRequired(
            f"the model is encrypted with content key {key_id!r}; pass content_key=... "
            f"(a device fetches it from GET /v1/keys/{key_id})."
        )
    if isinstance(key, ContentKey):
        if key.key_id != key_id:
            raise InvalidInput(
                f"the model is encrypted with content key {key_id!r}; got key {key.key_id!r}."
            )
        return key.secret
    if not isinstance(key, bytes | bytearray) or len(key) != AES_KEY_BYTES:
        raise InvalidInput(
            f"content_key must be {AES_KEY_BYTES} bytes (AES-256) for key {key_id!r}; "
            f"got {len(key) if isinstance(key, bytes | bytearray) else type(key).__name__}."
        )
    return bytes(key)


def _plaintext_chunks(verified: VerifiedPackage, secret: bytes | None) -> Iterator[bytes]:
    """Yield the model's plaintext, checking the member sha256 and, if encrypted, the tag."""
    entry = verified.manifest["members"][verified.model_member]
    with open_zip(verified.path) as archive:
        info = _member_info(archive, verified.model_member)
        if info.file_size != entry["size"]:
            raise MemberHashMismatch(
                f"model member is {info.file_size} bytes; the manifest says {entry['size']}."
            )
        member_hash = hashlib.sha256()
        decryptor = None
        if secret is not None:
            nonce = decode_nonce(verified.manifest)
            decryptor = Cipher(algorithms.AES(secret), modes.GCM(nonce)).decryptor()
        held = b""  # the last 16 bytes seen: the GCM tag once the stream ends
        for chunk in iter_member(archive, info, entry["size"]):
            member_hash.update(chunk)
            if decryptor is None:
                yield chunk
                continue
            held += chunk
            body, held = held[:-GCM_TAG_BYTES], held[-GCM_TAG_BYTES:]
            if body:
                yield decryptor.update(body)
        if member_hash.hexdigest() != entry["sha256"]:
            raise MemberHashMismatch(
                f"model member has sha256 {member_hash.hexdigest()}; the signed manifest "
                f"says {entry['sha256']}. The package changed since it was verified."
            )
        if decryptor is not None:
            try:
                yield decryptor.finalize_with_tag(held)
            except (InvalidTag, ValueError) as exc:
                raise DecryptionFailed(
                    f"AES-256-GCM rejected the model with content key "
                    f"{verified.content_key_id!r}: the key is wrong or the ciphertext was "
                    "modified. Fetch the key again; keep the previous model meanwhile."
                ) from exc


def _member_info(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(name)
    except KeyError as exc:
        raise MissingMember(
            f"package member {name!r} is gone since the package was verified."
        ) from exc
