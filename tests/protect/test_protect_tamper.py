"""Tampering: every way of changing a package is rejected, each with its specific error."""

from __future__ import annotations

import collections
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
from protect_helpers import (
    APP,
    Case,
    Kit,
    flip,
    put_bytes,
    read_members,
    resign,
    tamper_cases,
    write_members,
)

from pocketml.errors import IntegrityError
from pocketml.protect import (
    DecryptionFailed,
    MalformedPackage,
    MemberHashMismatch,
    SignatureInvalid,
    UntrustedKey,
    canonical_json,
    extract_model,
    read_member,
)
from pocketml.protect._zipio import make_zip_info

CASES = tamper_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_tamper_case_raises_its_specific_error(kit: Kit, case: Case) -> None:
    with pytest.raises(IntegrityError) as caught:
        case.run(kit)
    assert type(caught.value) is case.expected


def test_the_untampered_kit_packages_verify(kit: Kit) -> None:
    assert kit.verify(kit.plain.path).manifest["app_id"] == APP
    assert kit.verify(kit.encrypted.path).is_encrypted


@pytest.mark.parametrize("which", ["plain", "encrypted"])
def test_flipping_any_single_bit_of_the_file_is_rejected(small_kit: Kit, which: str) -> None:
    data = getattr(small_kit, which).path.read_bytes()
    target = small_kit.tmp / "flipped.pkg"
    seen: collections.Counter[str] = collections.Counter()
    for offset in range(len(data)):
        tampered = bytearray(data)
        tampered[offset] ^= 0x01 if offset % 2 else 0x80  # low and high bits, alternating
        put_bytes(target, tampered)
        with pytest.raises(IntegrityError) as caught:
            small_kit.verify(target)
        seen[type(caught.value).__name__] += 1
    assert sum(seen.values()) == len(data)
    assert {"MalformedPackage", "MemberHashMismatch"} <= set(seen)


def test_every_truncation_of_the_file_is_rejected(small_kit: Kit) -> None:
    data = small_kit.plain.path.read_bytes()
    target = small_kit.tmp / "cut.pkg"
    for length in range(len(data)):
        put_bytes(target, data[:length])
        with pytest.raises(MalformedPackage):
            small_kit.verify(target)


@pytest.mark.parametrize(
    "tail", [b"\x00", b"garbage" * 100, b"PK\x05\x06" + bytes(18)], ids=["nul", "text", "eocd"]
)
def test_appended_bytes_are_rejected(kit: Kit, tail: bytes) -> None:
    target = kit.tmp / "tail.pkg"
    put_bytes(target, kit.plain.path.read_bytes() + tail)
    with pytest.raises(MalformedPackage):
        kit.verify(target)


def test_flipping_any_manifest_byte_breaks_the_signature_or_the_key_id(small_kit: Kit) -> None:
    kit = small_kit
    members = read_members(kit.plain.path)
    manifest = members["manifest.json"]
    key_start = manifest.index(kit.key.key_id.encode())
    key_span = range(key_start, key_start + len(kit.key.key_id))
    target = kit.tmp / "manifest-flip.pkg"
    for offset in range(len(manifest)):
        write_members(target, {**members, "manifest.json": flip(manifest, offset)})
        expected = UntrustedKey if offset in key_span else SignatureInvalid
        with pytest.raises(IntegrityError) as caught:
            kit.verify(target)
        assert type(caught.value) is expected, offset


@pytest.mark.parametrize(
    "name", ["../evil.onnx", "/abs.onnx", "dir/model.onnx", "C:\\x.onnx", "..", ".hidden"]
)
def test_unsafe_zip_entry_names_are_malformed(kit: Kit, name: str) -> None:
    members = {**read_members(kit.plain.path), name: b"x"}
    with pytest.raises(MalformedPackage, match="unsafe"):
        kit.verify(write_members(kit.tmp / "slip.pkg", members))


def test_signed_manifest_listing_an_unsafe_member_is_malformed(kit: Kit) -> None:
    members = read_members(kit.plain.path)
    body = {n: d for n, d in members.items() if not n.startswith("manifest.")}
    body["../escape.txt"] = body.pop("card.md")
    with pytest.raises(MalformedPackage):
        kit.verify(resign(kit, kit.plain.path, kit.tmp / "r.pkg", members=body))


def test_duplicate_entry_names_are_malformed(kit: Kit) -> None:
    members = read_members(kit.plain.path)
    target = kit.tmp / "dup.pkg"
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in [*members.items(), ("card.md", members["card.md"])]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
                handle = archive.open(make_zip_info(name, len(data)), "w")
            with handle:
                handle.write(data)
    with pytest.raises(MalformedPackage, match="twice"):
        kit.verify(target)


def test_deflated_member_is_not_the_canonical_layout(kit: Kit) -> None:
    target = kit.tmp / "deflated.pkg"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in read_members(kit.plain.path).items():
            archive.writestr(name, data)
    with pytest.raises(MalformedPackage, match="layout"):
        kit.verify(target)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format", "zip"),
        ("format_version", 2),
        ("app_id", 7),
        ("members", []),
        ("model_member", "notes.txt"),
        ("model_sha256", "xyz"),
        ("encryption", {"algorithm": "ROT13", "key_id": "k", "nonce": "AAAA"}),
        ("surprise", 1),
    ],
)
def test_signed_manifest_with_a_bad_field_is_malformed(kit: Kit, field: str, value: Any) -> None:
    def edit(manifest: dict[str, Any]) -> None:
        manifest[field] = value

    with pytest.raises(MalformedPackage, match=field if field != "surprise" else "unknown"):
        kit.verify(resign(kit, kit.plain.path, kit.tmp / "bad.pkg", edit=edit))


def test_signed_but_non_canonical_manifest_is_malformed(kit: Kit) -> None:
    manifest = json.loads(read_members(kit.plain.path)["manifest.json"])
    pretty = json.dumps(manifest, indent=2, sort_keys=True).encode()
    with pytest.raises(MalformedPackage, match="canonical"):
        kit.verify(resign(kit, kit.plain.path, kit.tmp / "p.pkg", manifest_bytes=pretty))


@pytest.mark.parametrize(
    "raw",
    [b"[" * 200_000, b'{"signing_key_id": NaN}', b"\xff\xfe", b""],
    ids=["deep", "nan", "utf16", "empty"],
)
def test_hostile_manifest_bytes_are_a_bad_signature(kit: Kit, raw: bytes) -> None:
    members = {**read_members(kit.plain.path), "manifest.json": raw}
    with pytest.raises(SignatureInvalid):
        kit.verify(write_members(kit.tmp / "hostile.pkg", members))


def test_signed_manifest_with_nan_is_malformed(kit: Kit) -> None:
    raw = canonical_json(json.loads(read_members(kit.plain.path)["manifest.json"]))
    raw = raw.replace(b'"extra":{}', b'"extra":{"x":NaN}')
    with pytest.raises(MalformedPackage, match="non-JSON number"):
        kit.verify(resign(kit, kit.plain.path, kit.tmp / "nan.pkg", manifest_bytes=raw))


def test_signed_manifest_that_is_not_json_is_malformed_not_a_bad_signature(kit: Kit) -> None:
    with pytest.raises(MalformedPackage, match="signing_key_id"):
        kit.verify(resign(kit, kit.plain.path, kit.tmp / "p.pkg", manifest_bytes=b"{oops"))


def test_ciphertext_flipped_after_signing_fails_the_member_hash(kit: Kit) -> None:
    members = read_members(kit.encrypted.path)
    members["model.onnx.enc"] = flip(members["model.onnx.enc"], at=0)
    with pytest.raises(MemberHashMismatch, match=r"model\.onnx\.enc"):
        kit.verify(write_members(kit.tmp / "c.pkg", members))


def test_gcm_tag_flipped_and_resigned_fails_decryption(kit: Kit, tmp_path: Path) -> None:
    members = read_members(kit.encrypted.path)
    body = {n: d for n, d in members.items() if not n.startswith("manifest.")}
    body["model.onnx.enc"] = flip(body["model.onnx.enc"], at=-1)
    verified = kit.verify(resign(kit, kit.encrypted.path, kit.tmp / "t.pkg", members=body))
    with pytest.raises(DecryptionFailed):
        extract_model(verified, tmp_path / "out" / "m.onnx", content_key=kit.content_key)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("which", ["plain", "encrypted"])
def test_package_swapped_on_disk_after_verify_is_caught_on_extract(
    kit: Kit, tmp_path: Path, which: str
) -> None:
    package = getattr(kit, which).path
    verified = kit.verify(package)
    members = read_members(package)
    model = verified.model_member
    members[model] = flip(members[model])
    write_members(package, members)
    with pytest.raises(MemberHashMismatch):
        extract_model(verified, tmp_path / "m.onnx", content_key=kit.content_key)
    assert not (tmp_path / "m.onnx").exists()


def test_small_member_swapped_after_verify_is_caught_on_read(kit: Kit) -> None:
    verified = kit.verify(kit.plain.path)
    members = read_members(kit.plain.path)
    members["card.md"] = b"# evil card"
    write_members(kit.plain.path, members)
    with pytest.raises(MemberHashMismatch):
        read_member(verified, "card.md")
