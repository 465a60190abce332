"""Shared helpers of the protect tests: a kit of built packages, zip rewriting, tamper cases.

Imported by the tests and by ``tamper_table.py`` (which prints the tamper case -> error
table). Tampered packages are rewritten with the canonical zip layout, so each case reaches
the check it targets instead of failing early on the layout.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.errors import IntegrityError
from pocketml.protect import (
    ContentKey,
    DecryptionFailed,
    MalformedPackage,
    MemberHashMismatch,
    MissingMember,
    PackageInfo,
    SignatureInvalid,
    SigningKey,
    UnexpectedMember,
    UnsignedPackage,
    UntrustedKey,
    WrongApp,
    build_package,
    canonical_json,
    extract_model,
    verify_package,
)
from pocketml.protect._zipio import make_zip_info

APP = "app-7f3a"
SCHEMA: dict[str, Any] = {
    "inputs": [{"name": "image", "dtype": "float32", "shape": [1, 1, 8, 8]}],
    "outputs": [{"name": "probs", "kind": "classification", "labels": list("0123456789")}],
}
CARD = "# digits\n\nA small digit classifier. Ünïcode survives.\n"


def model_bytes(size: int = 4096, seed: int = 1234) -> bytes:
    """Deterministic pseudo-random bytes standing in for a model file."""
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Kit:
    """Everything a tamper case needs: keys, a plain and an encrypted package."""

    tmp: Path
    key: SigningKey
    content_key: ContentKey
    model: bytes
    plain: PackageInfo
    encrypted: PackageInfo

    @property
    def trusted(self) -> dict[str, bytes]:
        """The trusted key mapping that accepts this kit's packages."""
        return {self.key.key_id: self.key.public_bytes()}

    def verify(self, path: Path, **overrides: Any) -> Any:
        """Verify ``path`` with the kit's trust and app unless overridden."""
        kwargs: dict[str, Any] = {"trusted_keys": self.trusted, "app_id": APP, **overrides}
        return verify_package(path, **kwargs)


def make_kit(tmp: Path, model_size: int = 4096) -> Kit:
    """Build a plain and an encrypted package of a ``model_size`` model under ``tmp``."""
    tmp.mkdir(parents=True, exist_ok=True)
    key, content_key = SigningKey.generate(), ContentKey.generate()
    data = model_bytes(model_size)
    source = tmp / "digits.onnx"
    source.write_bytes(data)
    plain = build(source, tmp / "plain.pkg", key)
    encrypted = build(source, tmp / "encrypted.pkg", key, content_key=content_key)
    return Kit(tmp, key, content_key, data, plain, encrypted)


def build(source: Path, out: Path, key: SigningKey, **kwargs: Any) -> PackageInfo:
    """Build a package of ``source`` for APP with fixed metadata."""
    args: dict[str, Any] = {
        "app_id": APP,
        "model": "digits",
        "version": 3,
        "variant": "onnx-fp32",
        "model_format": "onnx",
        "precision": "fp32",
        "schema": SCHEMA,
        "card": CARD,
        "signing_key": key,
        **kwargs,
    }
    return build_package(source, out, **args)


def read_members(path: Path) -> dict[str, bytes]:
    """Every member of a zip, in file order."""
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_members(path: Path, members: Mapping[str, bytes]) -> Path:
    """Write ``members`` as a zip with the canonical layout (stored, fixed headers)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            with archive.open(make_zip_info(name, len(data)), "w") as handle:
                handle.write(data)
    return put_bytes(path, buffer.getvalue())


def put_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` in place (tests rewrite one file thousands of times, and
    truncating on open is slow on some filesystems)."""
    with path.open("r+b" if path.exists() else "wb") as handle:
        handle.write(data)
        handle.truncate()
    return path


def resign(
    kit: Kit,
    src: Path,
    dst: Path,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
    members: Mapping[str, bytes] | None = None,
    manifest_bytes: bytes | None = None,
) -> Path:
    """Rewrite a package with new members and an edited manifest, signed by the kit's key.

    Member entries of the manifest are recomputed from ``members``, so only what ``edit``
    changes (or ``manifest_bytes`` states outright) differs from an honest package.
    """
    import hashlib

    current = read_members(src)
    manifest = json.loads(current["manifest.json"])
    body = (
        dict(members)
        if members is not None
        else {name: data for name, data in current.items() if not name.startswith("manifest.")}
    )
    manifest["members"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        for name, data in body.items()
    }
    if edit is not None:
        edit(manifest)
    raw = manifest_bytes if manifest_bytes is not None else canonical_json(manifest)
    return write_members(dst, {**body, "manifest.json": raw, "manifest.sig": kit.key.sign(raw)})


def flip(data: bytes, at: int | None = None) -> bytes:
    """``data`` with one bit flipped (in the middle unless ``at`` is given)."""
    out = bytearray(data)
    out[len(data) // 2 if at is None else at] ^= 0x01
    return bytes(out)


MEMBER_EDITS: dict[str, Callable[[bytes], bytes]] = {
    "flip": flip,
    "cut": lambda data: data[:-1],
    "append": lambda data: data + b"\x00",
}


def tamper_member(kit: Kit, src: Path, name: str, how: str) -> Path:
    """Rewrite ``src`` with one member's bytes edited (``how`` in MEMBER_EDITS)."""
    members = read_members(src)
    members[name] = MEMBER_EDITS[how](members[name])
    return write_members(kit.tmp / f"{name}-{how}.pkg", members)


@dataclass(frozen=True)
class Case:
    """A tamper case: what is done, the error it must raise, and how to run it."""

    name: str
    expected: type[IntegrityError]
    run: Callable[[Kit], object]


def _member_cases() -> list[Case]:
    cases = []
    targets = [
        ("manifest.json", "plain", SignatureInvalid),
        ("manifest.sig", "plain", SignatureInvalid),
        ("model.onnx", "plain", MemberHashMismatch),
        ("model.onnx.enc", "encrypted", MemberHashMismatch),
        ("schema.json", "plain", MemberHashMismatch),
        ("card.md", "plain", MemberHashMismatch),
    ]
    for name, which, expected in targets:
        for how in MEMBER_EDITS:

            def run(kit: Kit, name: str = name, which: str = which, how: str = how) -> object:
                package: PackageInfo = getattr(kit, which)
                return kit.verify(tamper_member(kit, package.path, name, how))

            cases.append(Case(f"{how} a byte of {name}", expected, run))
    return cases


def _drop(kit: Kit, name: str) -> Path:
    members = read_members(kit.plain.path)
    del members[name]
    return write_members(kit.tmp / f"without-{name}.pkg", members)


def _add(kit: Kit, name: str) -> Path:
    members = {**read_members(kit.plain.path), name: b"surprise"}
    return write_members(kit.tmp / "extra.pkg", members)


def _whole_file(kit: Kit, label: str, edit: Callable[[bytes], bytes]) -> Path:
    return put_bytes(kit.tmp / f"whole-{label}.pkg", edit(kit.plain.path.read_bytes()))


def _ciphertext_flipped_and_resigned(kit: Kit) -> object:
    members = read_members(kit.encrypted.path)
    members["model.onnx.enc"] = flip(members["model.onnx.enc"])
    body = {n: d for n, d in members.items() if not n.startswith("manifest.")}
    verified = kit.verify(resign(kit, kit.encrypted.path, kit.tmp / "resigned.pkg", members=body))
    return extract_model(verified, kit.tmp / "out.onnx", content_key=kit.content_key)


def _checks(make: Callable[[Kit], Path]) -> Callable[[Kit], object]:
    return lambda kit: kit.verify(make(kit))


def _dropped(name: str) -> Callable[[Kit], object]:
    return _checks(lambda kit: _drop(kit, name))


def _added(name: str) -> Callable[[Kit], object]:
    return _checks(lambda kit: _add(kit, name))


def _file(label: str, edit: Callable[[bytes], bytes]) -> Callable[[Kit], object]:
    return _checks(lambda kit: _whole_file(kit, label, edit))


def _other_cases() -> list[Case]:
    other = SigningKey.generate()

    def untrusted(kit: Kit) -> object:
        return kit.verify(kit.plain.path, trusted_keys={other.key_id: other.public_bytes()})

    def wrong_content_key(kit: Kit) -> object:
        verified = kit.verify(kit.encrypted.path)
        return extract_model(verified, kit.tmp / "o.onnx", content_key=bytes(32))

    return [
        Case("member listed but absent (card.md)", MissingMember, _dropped("card.md")),
        Case("model member absent", MissingMember, _dropped("model.onnx")),
        Case("extra member not listed", UnexpectedMember, _added("notes.txt")),
        Case("manifest.sig removed (unsigned)", UnsignedPackage, _dropped("manifest.sig")),
        Case("manifest.json removed", MalformedPackage, _dropped("manifest.json")),
        Case("zip-slip name ../evil.so", MalformedPackage, _added("../evil.so")),
        Case("absolute name /etc/passwd", MalformedPackage, _added("/etc/passwd")),
        Case("package for another app", WrongApp, lambda k: k.verify(k.plain.path, app_id="other")),
        Case("signed by an unknown key", UntrustedKey, untrusted),
        Case("wrong content key", DecryptionFailed, wrong_content_key),
        Case("ciphertext flipped, re-signed", DecryptionFailed, _ciphertext_flipped_and_resigned),
        Case("file: not a zip", MalformedPackage, _file("junk", lambda d: b"junk" * 100)),
        Case("file: empty", MalformedPackage, _file("empty", lambda d: b"")),
        Case("file: cut to half", MalformedPackage, _file("half", lambda d: d[: len(d) // 2])),
        Case("file: last byte cut", MalformedPackage, _file("cut", lambda d: d[:-1])),
        Case("file: garbage appended", MalformedPackage, _file("tail", lambda d: d + b"garbage")),
        Case("file: bytes prepended", MalformedPackage, _file("head", lambda d: b"MZ" + d)),
    ]  # fmt: skip


def tamper_cases() -> list[Case]:
    """Every named tamper case with the error it must raise."""
    return _member_cases() + _other_cases()
