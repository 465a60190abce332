"""Building, verifying and extracting packages: the honest paths and caller errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from protect_helpers import APP, CARD, SCHEMA, Kit, build, model_bytes

from pocketml.errors import IntegrityError, InvalidInput, NotFound
from pocketml.protect import (
    ContentKey,
    ContentKeyRequired,
    DecryptionFailed,
    SigningKey,
    UntrustedKey,
    VerifiedPackage,
    canonical_json,
    extract_model,
    read_member,
    verify,
    verify_package,
)
from pocketml.protocol import file_sha256


def test_plain_package_round_trips_the_model_bytes(kit: Kit, tmp_path: Path) -> None:
    verified = kit.verify(kit.plain.path)
    out = extract_model(verified, tmp_path / "cache" / "digits.onnx")
    assert out.read_bytes() == kit.model
    assert not verified.is_encrypted
    assert verified.signing_key_id == kit.key.key_id


def test_encrypted_package_round_trips_with_raw_key_or_content_key(
    kit: Kit, tmp_path: Path
) -> None:
    verified = kit.verify(kit.encrypted.path)
    by_bytes = extract_model(verified, tmp_path / "a.onnx", content_key=kit.content_key.secret)
    by_key = extract_model(verified, tmp_path / "b.onnx", content_key=kit.content_key)
    assert by_bytes.read_bytes() == kit.model
    assert by_key.read_bytes() == kit.model
    assert verified.content_key_id == kit.content_key.key_id


def test_encrypted_member_does_not_contain_the_plaintext(kit: Kit) -> None:
    with zipfile.ZipFile(kit.encrypted.path) as archive:
        stored = archive.read("model.onnx.enc")
    assert len(stored) == len(kit.model) + 16
    assert kit.model[:64] not in stored


def test_manifest_records_every_field_the_design_names(kit: Kit) -> None:
    manifest = kit.encrypted.manifest
    assert manifest["format"] == "pocketml-package"
    assert manifest["format_version"] == 1
    assert (manifest["app_id"], manifest["model"], manifest["version"]) == (APP, "digits", 3)
    assert (manifest["variant"], manifest["model_format"], manifest["precision"]) == (
        "onnx-fp32",
        "onnx",
        "fp32",
    )
    assert set(manifest["members"]) == {"model.onnx.enc", "schema.json", "card.md"}
    assert manifest["model_member"] == "model.onnx.enc"
    assert manifest["model_size"] == len(kit.model)
    assert manifest["encryption"]["algorithm"] == "AES-256-GCM"
    assert manifest["encryption"]["key_id"] == kit.content_key.key_id
    assert manifest["signing_key_id"] == kit.key.key_id
    assert manifest["extra"] == {}


def test_manifest_member_is_the_canonical_json_of_the_returned_manifest(kit: Kit) -> None:
    with zipfile.ZipFile(kit.plain.path) as archive:
        raw = archive.read("manifest.json")
    assert raw == canonical_json(kit.plain.manifest)
    assert json.loads(raw) == kit.plain.manifest


def test_package_info_hash_and_size_describe_the_file(kit: Kit) -> None:
    assert (file_sha256(kit.plain.path), kit.plain.path.stat().st_size) == (
        kit.plain.sha256,
        kit.plain.size,
    )
    assert kit.plain.path.stat().st_size == kit.plain.size


def test_read_member_returns_schema_and_card(kit: Kit) -> None:
    verified = kit.verify(kit.plain.path)
    assert json.loads(read_member(verified, "schema.json")) == SCHEMA
    assert read_member(verified, "card.md").decode("utf-8") == CARD


def test_read_member_refuses_the_model_and_unknown_names(kit: Kit) -> None:
    verified = kit.verify(kit.plain.path)
    with pytest.raises(InvalidInput, match="extract_model"):
        read_member(verified, "model.onnx")
    with pytest.raises(NotFound, match=r"notes\.txt"):
        read_member(verified, "notes.txt")


def test_verify_is_an_alias_of_verify_package() -> None:
    assert verify is verify_package


def test_extra_metadata_is_signed_into_the_manifest(kit: Kit, tmp_path: Path) -> None:
    info = build(kit.tmp / "digits.onnx", tmp_path / "x.pkg", kit.key, extra={"run": "r-1"})
    assert kit.verify(info.path).manifest["extra"] == {"run": "r-1"}


def test_rebuilding_replaces_the_output_and_leaves_no_temp_files(kit: Kit, tmp_path: Path) -> None:
    out = tmp_path / "out" / "p.pkg"
    build(kit.tmp / "digits.onnx", out, kit.key)
    second = build(kit.tmp / "digits.onnx", out, kit.key, version=4)
    assert kit.verify(out).manifest["version"] == 4
    assert second.path == out
    assert [p.name for p in out.parent.iterdir()] == ["p.pkg"]


def test_build_failing_midway_keeps_the_previous_package_and_no_temp(
    kit: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out = build(kit.tmp / "digits.onnx", out_dir / "p.pkg", kit.key).path
    before = out.read_bytes()

    def fail(self: SigningKey, data: bytes) -> bytes:
        raise OSError("injected: disk full")

    monkeypatch.setattr(SigningKey, "sign", fail)
    with pytest.raises(OSError, match="disk full"):
        build(kit.tmp / "digits.onnx", out, kit.key, version=9)
    assert out.read_bytes() == before
    assert [p.name for p in out_dir.iterdir()] == ["p.pkg"]


def test_non_json_extra_is_refused_before_writing(kit: Kit, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="JSON"):
        build(kit.tmp / "digits.onnx", tmp_path / "p.pkg", kit.key, extra={"x": float("nan")})
    assert not (tmp_path / "p.pkg").exists()


def test_package_signed_by_a_retired_key_verifies_while_it_is_trusted(
    kit: Kit, tmp_path: Path
) -> None:
    new_key = SigningKey.generate()
    old_package = kit.plain.path  # signed by kit.key, now retired
    new_package = build(kit.tmp / "digits.onnx", tmp_path / "new.pkg", new_key).path
    both = {**kit.trusted, new_key.key_id: new_key.public_bytes()}
    assert verify_package(old_package, trusted_keys=both, app_id=APP).signing_key_id == (
        kit.key.key_id
    )
    assert verify_package(new_package, trusted_keys=both, app_id=APP).signing_key_id == (
        new_key.key_id
    )


def test_package_signed_by_a_key_no_longer_trusted_is_rejected(kit: Kit) -> None:
    new_key = SigningKey.generate()
    with pytest.raises(UntrustedKey, match=kit.key.key_id):
        verify_package(
            kit.plain.path, trusted_keys={new_key.key_id: new_key.public_bytes()}, app_id=APP
        )


def test_trusted_mapping_with_a_mismatched_id_is_a_caller_error(kit: Kit) -> None:
    wrong = {kit.key.key_id: SigningKey.generate().public_bytes()}
    with pytest.raises(InvalidInput, match="signing_key_id"):
        verify_package(kit.plain.path, trusted_keys=wrong, app_id=APP)


def test_extracting_an_encrypted_model_without_a_key_names_the_key_id(
    kit: Kit, tmp_path: Path
) -> None:
    verified = kit.verify(kit.encrypted.path)
    with pytest.raises(ContentKeyRequired, match=kit.content_key.key_id):
        extract_model(verified, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_content_key_with_another_id_is_refused(kit: Kit, tmp_path: Path) -> None:
    verified = kit.verify(kit.encrypted.path)
    with pytest.raises(InvalidInput, match=kit.content_key.key_id):
        extract_model(verified, tmp_path / "m.onnx", content_key=ContentKey.generate())


def test_wrong_content_key_leaves_no_partial_output(kit: Kit, tmp_path: Path) -> None:
    verified = kit.verify(kit.encrypted.path)
    out_dir = tmp_path / "out"
    with pytest.raises(DecryptionFailed):
        extract_model(verified, out_dir / "m.onnx", content_key=bytes(32))
    assert list(out_dir.iterdir()) == []


def test_wrong_content_key_keeps_a_previous_model_file(kit: Kit, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"previous model")
    with pytest.raises(DecryptionFailed):
        extract_model(kit.verify(kit.encrypted.path), out, content_key=bytes(32))
    assert out.read_bytes() == b"previous model"


def test_verify_of_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        verify_package(tmp_path / "absent.pkg", trusted_keys={}, app_id=APP)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 0),
        ("version", True),
        ("app_id", ""),
        ("model_format", "pt"),
        ("schema", "not a dict"),
        ("card", b"bytes"),
        ("extra", {"x": object()}),
    ],
)
def test_build_rejects_bad_arguments(kit: Kit, tmp_path: Path, field: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=field if field != "extra" else "JSON"):
        build(kit.tmp / "digits.onnx", tmp_path / "p.pkg", kit.key, **{field: value})
    assert not (tmp_path / "p.pkg").exists()


def test_build_of_a_missing_model_file_is_not_found(kit: Kit, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        build(tmp_path / "absent.onnx", tmp_path / "p.pkg", kit.key)


@pytest.mark.parametrize(
    ("filename", "member"),
    [("m.mlmodel", "model.mlmodel"), ("m.mlpackage.zip", "model.mlpackage.zip")],
)
def test_core_ml_models_keep_their_kind_in_the_member_name(
    kit: Kit, tmp_path: Path, filename: str, member: str
) -> None:
    source = tmp_path / filename
    source.write_bytes(model_bytes(512))
    info = build(source, tmp_path / "p.pkg", kit.key, model_format="coreml")
    verified = kit.verify(info.path)
    assert verified.model_member == member
    assert extract_model(verified, tmp_path / "out").read_bytes() == source.read_bytes()


def test_core_ml_package_folder_must_be_zipped_first(kit: Kit, tmp_path: Path) -> None:
    folder = tmp_path / "m.mlpackage"
    folder.mkdir()
    with pytest.raises(InvalidInput, match=r"mlpackage\.zip"):
        build(folder, tmp_path / "p.pkg", kit.key, model_format="coreml")


def test_empty_model_file_round_trips_encrypted(kit: Kit, tmp_path: Path) -> None:
    source = tmp_path / "empty.tflite"
    source.write_bytes(b"")
    info = build(
        source, tmp_path / "p.pkg", kit.key, model_format="tflite", content_key=kit.content_key
    )
    verified = kit.verify(info.path)
    out = extract_model(verified, tmp_path / "m.tflite", content_key=kit.content_key)
    assert out.read_bytes() == b""


def test_verified_package_is_frozen(kit: Kit) -> None:
    verified = kit.verify(kit.plain.path)
    assert isinstance(verified, VerifiedPackage)
    with pytest.raises(AttributeError):
        verified.signing_key_id = "x"  # type: ignore[misc]


def test_every_check_failure_is_an_integrity_error_subclass() -> None:
    import pocketml.protect as protect

    names = [
        "MalformedPackage",
        "UnsignedPackage",
        "UntrustedKey",
        "SignatureInvalid",
        "WrongApp",
        "MissingMember",
        "UnexpectedMember",
        "MemberHashMismatch",
        "DecryptionFailed",
    ]
    classes = [getattr(protect, name) for name in names]
    assert all(issubclass(cls, IntegrityError) for cls in classes)
    assert len({cls.code for cls in classes}) == len(classes)


def test_importing_protect_loads_no_heavy_framework() -> None:
    import subprocess
    import sys

    heavy = ["torch", "fastapi", "sqlalchemy", "sklearn", "onnx", "pydantic", "numpy"]
    code = f"import sys, pocketml.protect; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
