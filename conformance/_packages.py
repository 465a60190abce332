"""Package and keyring vectors: valid, encrypted, tampered, rotation (see generate.py)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from _world import (
    APP_ID,
    CARD,
    CONTENT_KEY,
    CREATED_AT,
    KEY_A,
    KEY_B,
    KEY_C,
    MODEL,
    NONCE,
    OTHER_APP_ID,
    SCHEMA,
    VARIANT,
    WRONG_CONTENT_KEY,
    b64,
    keyring,
    keys_json,
)  # fmt: skip

from pocketml.errors import PocketMLError
from pocketml.protect import (
    Keyring,
    SigningKey,
    build_package,
    extract_model,
    follow_keyrings,
    verify,
)

# -- packages -------------------------------------------------------------------------------


@contextlib.contextmanager
def _pinned_build() -> Iterator[None]:
    """Pin the build's nonce and clock so a package's bytes depend on its inputs only.

    Only this generator does this: a real build must use a fresh nonce per encryption.
    """

    class _Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> _Clock:
            return cls.fromtimestamp(CREATED_AT.timestamp(), tz)

    with (
        mock.patch("pocketml.protect._package.os.urandom", lambda n: NONCE[:n]),
        mock.patch("pocketml.protect._package.datetime", _Clock),
    ):
        yield


def build(
    out: Path,
    model_file: Path,
    *,
    key: SigningKey,
    app_id: str = APP_ID,
    encrypted: bool = False,
    version: int = 1,
) -> bytes:
    with _pinned_build():
        build_package(
            model_file,
            out,
            app_id=app_id,
            model=MODEL,
            version=version,
            variant=VARIANT,
            model_format="onnx",
            precision="fp32",
            schema=SCHEMA,
            card=CARD,
            signing_key=key,
            content_key=CONTENT_KEY if encrypted else None,
            extra={"source": "conformance"},
        )
    return out.read_bytes()


def members_of(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(_io(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def _io(data: bytes) -> Any:

    return io.BytesIO(data)


def rezip(members: list[tuple[str, bytes]], *, compress: str | None = None) -> bytes:
    """Write members in pocketml's canonical stored layout (valid zip, valid CRCs).

    A tampered vector made this way passes every zip-level check, so the failure it expects
    comes from the package rules (signature, member list, hashes), not from a broken zip.
    """
    buffer = _io(b"")
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED
            archive.writestr(info, data)
    return bytes(buffer.getvalue())


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def data_offset(package: bytes, member: str) -> int:
    """The offset of a stored member's first data byte in the package file."""
    with zipfile.ZipFile(_io(package)) as archive:
        info = archive.getinfo(member)
    return int(info.header_offset) + 30 + len(member.encode())


def replace_member(
    members: list[tuple[str, bytes]], name: str, data: bytes
) -> list[tuple[str, bytes]]:
    return [(n, data if n == name else d) for n, d in members]


def python_outcome(
    path: Path, trusted: dict[str, str], app_id: str, content_key: str | None, workdir: Path
) -> dict[str, Any]:
    """What the Python SDK does with a package: the vector's expected outcome."""
    trusted_raw = {k: base64.b64decode(v) for k, v in trusted.items()}
    try:
        package = verify(path, trusted_keys=trusted_raw, app_id=app_id)
        key = None if content_key is None else base64.b64decode(content_key)
        out = extract_model(package, workdir / f"{path.stem}.onnx", content_key=key)
    except PocketMLError as exc:
        return {"ok": False, "error": exc.code}
    return {
        "ok": True,
        "signing_key_id": package.signing_key_id,
        "model_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "manifest": {
            k: package.manifest[k]
            for k in ("app_id", "model", "version", "variant", "model_format", "model_member")
        },
    }


def package_vectors(out: Path, model_file: Path, work: Path) -> list[dict[str, Any]]:
    """Every package vector: valid, encrypted, each tampered variant, rotation cases."""
    pkgs = out / "packages"
    pkgs.mkdir()
    plain = build(work / "plain.pkg", model_file, key=KEY_A)
    enc = build(work / "enc.pkg", model_file, key=KEY_A, encrypted=True)
    members = members_of(plain)
    manifest = dict(members)["manifest.json"]
    edited_manifest = manifest.replace(b'"version":1', b'"version":2')
    assert edited_manifest != manifest
    spaced = json.dumps(json.loads(manifest), sort_keys=True).encode()  # signed, not canonical
    key_b64 = b64(CONTENT_KEY.secret)
    trusted_a = keys_json(KEY_A)
    ring2 = keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A, KEY_B))
    ring3 = keyring(3, active=KEY_B, keys=(KEY_B,), revoked=(KEY_A,), signers=(KEY_B,))
    files: dict[str, bytes] = {
        "valid-plain.pkg": plain,
        "valid-encrypted.pkg": enc,
        "flip-manifest-byte.pkg": flip(plain, data_offset(plain, "manifest.json") + 10),
        "flip-model-byte.pkg": flip(plain, data_offset(plain, "model.onnx") + 20),
        "flip-signature-byte.pkg": flip(plain, data_offset(plain, "manifest.sig") + 5),
        "flip-ciphertext-byte.pkg": flip(enc, data_offset(enc, "model.onnx.enc") + 20),
        "manifest-edited.pkg": rezip(replace_member(members, "manifest.json", edited_manifest)),
        "signature-edited.pkg": rezip(replace_member(members, "manifest.sig", KEY_A.sign(b"x"))),
        "manifest-not-canonical.pkg": rezip(
            replace_member(
                replace_member(members, "manifest.json", spaced), "manifest.sig", KEY_A.sign(spaced)
            )
        ),
        "member-edited.pkg": rezip(replace_member(members, "card.md", b"# changed\n")),
        "missing-member.pkg": rezip([m for m in members if m[0] != "card.md"]),
        "extra-member.pkg": rezip([*members[:-1], ("notes.txt", b"added"), members[-1]]),
        "unsigned.pkg": rezip([m for m in members if m[0] != "manifest.sig"]),
        "no-manifest.pkg": rezip([m for m in members if m[0] != "manifest.json"]),
        "zip-slip.pkg": rezip([("../evil.onnx", b"x"), *members]),
        "compressed-member.pkg": rezip(members, compress="card.md"),
        "appended-bytes.pkg": plain + b"\x00trailing",
        "truncated.pkg": plain[: len(plain) // 2],
        "not-a-zip.pkg": b"this is not a zip file at all\n" * 4,
        "wrong-app.pkg": build(work / "wrong.pkg", model_file, key=KEY_A, app_id=OTHER_APP_ID),
        "untrusted-key.pkg": build(work / "c.pkg", model_file, key=KEY_C),
        "signed-by-rotated-key.pkg": build(work / "b.pkg", model_file, key=KEY_B, version=2),
    }
    cases: list[tuple[str, str, dict[str, str], str | None, str]] = [
        ("valid-plain", "valid-plain.pkg", trusted_a, None, "an untouched package"),
        (
            "valid-encrypted",
            "valid-encrypted.pkg",
            trusted_a,
            key_b64,
            "an encrypted package opened with its content key",
        ),
        (
            "encrypted-wrong-key",
            "valid-encrypted.pkg",
            trusted_a,
            b64(WRONG_CONTENT_KEY),
            "an encrypted package opened with another 32-byte key",
        ),
        (
            "encrypted-without-key",
            "valid-encrypted.pkg",
            trusted_a,
            None,
            "an encrypted package extracted without a content key",
        ),
        (
            "flip-manifest-byte",
            "flip-manifest-byte.pkg",
            trusted_a,
            None,
            "one bit of manifest.json flipped in place (its zip CRC no longer matches)",
        ),
        (
            "flip-model-byte",
            "flip-model-byte.pkg",
            trusted_a,
            None,
            "one bit of the model member flipped in place",
        ),
        (
            "flip-signature-byte",
            "flip-signature-byte.pkg",
            trusted_a,
            None,
            "one bit of manifest.sig flipped in place",
        ),
        (
            "flip-ciphertext-byte",
            "flip-ciphertext-byte.pkg",
            trusted_a,
            key_b64,
            "one bit of the encrypted model flipped in place",
        ),
        (
            "manifest-edited",
            "manifest-edited.pkg",
            trusted_a,
            None,
            "manifest.json changed (version 1 -> 2) and re-zipped with valid CRCs",
        ),
        (
            "signature-edited",
            "signature-edited.pkg",
            trusted_a,
            None,
            "manifest.sig replaced by A's signature of other bytes, re-zipped with valid CRCs",
        ),
        (
            "manifest-not-canonical",
            "manifest-not-canonical.pkg",
            trusted_a,
            None,
            "a manifest signed by A but written with spaces (not canonical JSON)",
        ),
        (
            "member-edited",
            "member-edited.pkg",
            trusted_a,
            None,
            "card.md replaced and re-zipped with valid CRCs",
        ),
        ("missing-member", "missing-member.pkg", trusted_a, None, "card.md removed"),
        ("extra-member", "extra-member.pkg", trusted_a, None, "notes.txt added"),
        ("unsigned", "unsigned.pkg", trusted_a, None, "manifest.sig removed (a downgrade)"),
        ("no-manifest", "no-manifest.pkg", trusted_a, None, "manifest.json removed"),
        ("zip-slip", "zip-slip.pkg", trusted_a, None, "a member named ../evil.onnx"),
        (
            "compressed-member",
            "compressed-member.pkg",
            trusted_a,
            None,
            "card.md stored deflated instead of stored",
        ),
        ("appended-bytes", "appended-bytes.pkg", trusted_a, None, "bytes after the zip end"),
        ("truncated", "truncated.pkg", trusted_a, None, "the first half of a package"),
        ("not-a-zip", "not-a-zip.pkg", trusted_a, None, "text, not a zip"),
        ("wrong-app", "wrong-app.pkg", trusted_a, None, "a valid package of another app"),
        ("untrusted-key", "untrusted-key.pkg", trusted_a, None, "signed by a key not pinned"),
        (
            "rotation-retired-key-still-verifies",
            "valid-plain.pkg",
            _trusted(ring2),
            None,
            "signed by key A, pinned keyring 2 keeps A retired (verify-only) with B active",
        ),
        (
            "rotation-new-key-verifies",
            "signed-by-rotated-key.pkg",
            _trusted(ring2),
            None,
            "signed by the new active key B, pinned keyring 2",
        ),
        (
            "rotation-new-key-before-pin",
            "signed-by-rotated-key.pkg",
            trusted_a,
            None,
            "signed by B while the device still pins only A",
        ),
        (
            "rotation-revoked-key-refused",
            "valid-plain.pkg",
            _trusted(ring3),
            None,
            "signed by key A, pinned keyring 3 revoked A",
        ),
    ]
    for name, data in files.items():
        (pkgs / name).write_bytes(data)
    vectors = []
    for name, file, trusted, content_key, description in cases:
        vectors.append(
            {
                "name": name,
                "description": description,
                "file": f"packages/{file}",
                "sha256": hashlib.sha256(files[file]).hexdigest(),
                "app_id": APP_ID,
                "trusted_keys": trusted,
                "content_key": content_key,
                "expect": python_outcome(pkgs / file, trusted, APP_ID, content_key, work),
            }
        )
    return vectors


# -- keyrings ---------------------------------------------------------------------------------


def _trusted(ring: Keyring) -> dict[str, str]:
    return {k: b64(v) for k, v in ring.trusted_keys().items()}


def keyring_vectors() -> list[dict[str, Any]]:
    """The pin-and-rotate rule of docs/packages.md as (pinned, offered, chain) -> outcome."""
    r1 = keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,))
    r2 = keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A, KEY_B))
    r3 = keyring(3, active=KEY_B, keys=(KEY_B,), revoked=(KEY_A,), signers=(KEY_B,))
    r2_foreign = keyring(2, active=KEY_C, keys=(KEY_C,), signers=(KEY_C,))
    r2_not_by_active = keyring(2, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_A,))
    r4_back = keyring(4, active=KEY_B, keys=(KEY_A, KEY_B), signers=(KEY_B,))
    other_app = keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,), app_id=OTHER_APP_ID)
    tampered = r2.to_dict()
    tampered["issued_at"] = "2026-12-02T00:00:00Z"
    bad_b64 = r1.to_dict()
    bad_b64["keys"] = {KEY_A.key_id: "not base64!"}
    cases: list[tuple[str, Any, Any, list[Any], str]] = [
        ("first-use", None, r1.to_dict(), [], "no pin: trust the first well-signed keyring"),
        (
            "shipped-bare-keys",
            keys_json(KEY_A),
            r2.to_dict(),
            [],
            "the app shipped {key_id: key} (sequence 0); keyring 2 is signed by A",
        ),
        ("rotation", r1.to_dict(), r2.to_dict(), [], "1 -> 2, signed by A (pinned) and B"),
        ("same-keyring", r2.to_dict(), r2.to_dict(), [], "the pinned keyring offered again"),
        ("stale", r2.to_dict(), r1.to_dict(), [], "an older keyring offered (replay)"),
        (
            "unendorsed",
            r1.to_dict(),
            r2_foreign.to_dict(),
            [],
            "keyring 2 of a key the device never trusted, signed only by it",
        ),
        (
            "not-signed-by-active",
            r1.to_dict(),
            r2_not_by_active.to_dict(),
            [],
            "keyring 2 names B active but only A signed it",
        ),
        ("tampered", r1.to_dict(), tampered, [], "issued_at changed after signing"),
        ("other-app", None, other_app.to_dict(), [], "a keyring of another app"),
        ("bad-base64", None, bad_b64, [], "a public key that is not base64"),
        (
            "revoked-key-comes-back",
            r3.to_dict(),
            r4_back.to_dict(),
            [],
            "keyring 4 lists A again after keyring 3 revoked it",
        ),
        (
            "revocation-without-chain",
            r1.to_dict(),
            r3.to_dict(),
            [],
            "pinned 1 (A); offered 3 is signed only by B",
        ),
        (
            "revocation-walks-chain",
            r1.to_dict(),
            r3.to_dict(),
            [r1.to_dict(), r2.to_dict()],
            "pinned 1 (A); offered 3 with chain [1, 2]: 2 is accepted first, then 3",
        ),
    ]
    vectors = []
    for name, pinned, offered, chain, description in cases:
        vectors.append(
            {
                "name": name,
                "description": description,
                "app_id": APP_ID,
                "pinned": pinned,
                "offered": offered,
                "chain": chain,
                "expect": _keyring_outcome(pinned, offered, chain),
            }
        )
    return vectors


def _keyring_outcome(pinned: Any, offered: Any, chain: list[Any]) -> dict[str, Any]:
    pin: Keyring | dict[str, bytes] | None
    if pinned is None:
        pin = None
    elif "sequence" in pinned:
        pin = Keyring.from_dict(pinned)
    else:
        pin = {k: base64.b64decode(v) for k, v in pinned.items()}
    try:
        ring = follow_keyrings(pin, offered, chain, app_id=APP_ID)
    except PocketMLError as exc:
        return {"ok": False, "error": exc.code}
    return {"ok": True, "sequence": ring.sequence, "trusted_keys": sorted(ring.trusted_keys())}
