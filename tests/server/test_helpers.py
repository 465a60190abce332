"""Pure helpers of the server: Range parsing, BUILD_DIR parsing, deterministic zips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketml.errors import IntegrityError, InvalidInput, NotFound
from pocketml.protocol import file_sha256 as sha256_file
from pocketml.server._build_dir import prepare_build, zip_directory
from pocketml.server._ranges import parse_range
from pocketml.server.errors import RangeNotSatisfiable
from pocketml.testing import DIGITS_SCHEMA

from .conftest import random_file


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=10-", (10, 99)),
        ("bytes=-5", (95, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=-500", (0, 99)),
        ("bytes=5-2", None),
        ("items=0-5", None),
        ("bytes=0-1,5-6", None),
    ],
)
def test_parse_range_resolves_a_single_byte_range(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=-0", "bytes=500-600"])
def test_parse_range_rejects_ranges_outside_the_file(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


def _write_build(root: Path, variants: list[dict[str, object]]) -> Path:
    root.mkdir(exist_ok=True)
    (root / "schema.json").write_text(json.dumps(DIGITS_SCHEMA))
    manifest = {"format_version": 1, "model": "digits", "variants": variants}
    (root / "build.json").write_text(json.dumps(manifest))
    return root


def test_mlpackage_directories_are_zipped_deterministically(tmp_path: Path) -> None:
    package = tmp_path / "m.mlpackage"
    (package / "Data").mkdir(parents=True)
    random_file(package / "Data" / "weights.bin", 3000, 1)
    (package / "Manifest.json").write_text("{}")
    first = sha256_file(zip_directory(package, tmp_path / "a.zip"))
    (package / "Manifest.json").touch()  # new mtime, same content
    second = sha256_file(zip_directory(package, tmp_path / "b.zip"))
    assert first == second

    build = _write_build(
        tmp_path,
        [{"name": "coreml", "file": "m.mlpackage", "format": "coreml", "precision": "fp16"}],
    )
    prepared = prepare_build(build)
    try:
        assert prepared.variants[0].sha256 == first
        assert prepared.metadata["variants"][0]["sha256"] == first
    finally:
        prepared.cleanup()
    assert not prepared.work_dir.exists()


def test_prepare_build_rejects_a_missing_file_an_unknown_format_and_a_bad_hash(
    tmp_path: Path,
) -> None:
    model = random_file(tmp_path / "model.onnx", 100, 2)
    missing = _write_build(
        tmp_path / "a", [{"name": "v", "file": "nope.onnx", "format": "onnx", "precision": "fp32"}]
    )
    unknown = _write_build(
        tmp_path / "b", [{"name": "v", "file": str(model), "format": "exe", "precision": "fp32"}]
    )
    bad_hash = _write_build(
        tmp_path / "c",
        [
            {
                "name": "v",
                "file": str(model),
                "format": "onnx",
                "precision": "fp32",
                "sha256": "2" * 64,
            }
        ],
    )
    with pytest.raises(NotFound, match=r"nope\.onnx"):
        prepare_build(missing)
    with pytest.raises(InvalidInput, match=r"variants\.0\.format"):
        prepare_build(unknown)
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        prepare_build(bad_hash)
    with pytest.raises(NotFound, match=r"build\.json"):
        prepare_build(tmp_path / "empty")


def test_a_build_dir_profile_is_sent_with_the_push_metadata(tmp_path: Path) -> None:
    root = tmp_path / "b"
    _write_build(root, [{"name": "v", "file": "m.onnx", "format": "onnx", "precision": "fp32"}])
    random_file(root / "m.onnx", 100, 1)
    manifest = json.loads((root / "build.json").read_text())
    (root / "build.json").write_text(json.dumps({**manifest, "reference_profile": "profile.json"}))
    (root / "profile.json").write_text(json.dumps({"format": 1, "bins": []}))

    prepared = prepare_build(root)
    prepared.cleanup()

    assert prepared.metadata["reference_profile"] == {"format": 1, "bins": []}


def test_a_build_dir_without_a_profile_sends_no_profile_key(tmp_path: Path) -> None:
    root = _write_build(
        tmp_path / "b", [{"name": "v", "file": "m.onnx", "format": "onnx", "precision": "fp32"}]
    )
    random_file(root / "m.onnx", 100, 1)

    prepared = prepare_build(root)
    prepared.cleanup()

    assert "reference_profile" not in prepared.metadata
