"""choose_variant: the variant rule on constructed versions (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pocketml.delivery import CheckinFacts, choose_variant, parse_min_runtime
from pocketml.registry import VariantInfo, VersionInfo

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def variant(name: str, fmt: str, precision: str = "fp32", **kw: Any) -> VariantInfo:
    fields: dict[str, Any] = {
        "id": f"var_{name}",
        "name": name,
        "format": fmt,
        "precision": precision,
        "role": "device",
        "size": {"fp32": 4000, "fp16": 2000, "int8": 1000}[precision],
        "sha256": "0" * 64,
        "package_id": name.ljust(64, "0")[:64],
        "package_size": 5000,
        "signing_key_id": "ed25519:k",
        "content_key_id": None,
        "compatibility": {},
        "metrics": {},
        "benchmarks": {},
        "profiles": [],
        "created_at": NOW,
    }
    fields.update(kw)
    return VariantInfo(**fields)


def version(*variants: VariantInfo) -> VersionInfo:
    return VersionInfo(
        id="ver_1",
        model="digits",
        version=1,
        stage="production",
        dataset_fingerprint=None,
        parent_version=None,
        source_framework=None,
        params={},
        metrics={},
        run_record={},
        card="",
        created_at=NOW,
        variants=variants,
    )


def device(formats: tuple[str, ...], platform: str = "android", **kw: Any) -> CheckinFacts:
    return CheckinFacts(device_id="dev-00000001", platform=platform, formats=formats, **kw)


def test_the_first_listed_format_the_device_runs_wins() -> None:
    v = version(variant("a-onnx", "onnx"), variant("b-tflite", "tflite"))
    assert choose_variant(device(("tflite", "onnx")), v).name == "b-tflite"
    assert choose_variant(device(("onnx", "tflite")), v).name == "a-onnx"


def test_cloud_variants_and_unlisted_formats_are_never_chosen() -> None:
    v = version(variant("cloud", "onnx", role="cloud"), variant("cm", "coreml"))
    assert choose_variant(device(("onnx", "tflite")), v) is None


def test_nothing_loadable_gives_none() -> None:
    v = version(variant("a", "tflite"))
    assert choose_variant(device(("coreml",), platform="ios"), v) is None


def test_a_min_runtime_the_device_does_not_meet_excludes_the_variant() -> None:
    new = variant("new", "onnx", compatibility={"min_runtime": "onnxruntime>=1.17"})
    old = variant(
        "old", "onnx", precision="fp16", compatibility={"min_runtime": "onnxruntime>=1.13"}
    )
    v = version(new, old)
    assert choose_variant(device(("onnx",), runtimes=(("onnxruntime", "1.16.3"),)), v).name == "old"
    assert choose_variant(device(("onnx",), runtimes=(("onnxruntime", "1.20.0"),)), v).name == "new"
    assert choose_variant(device(("onnx",), runtimes=(("onnxruntime", "1.12"),)), v) is None


def test_an_unreported_runtime_does_not_exclude_a_variant() -> None:
    v = version(variant("a", "onnx", compatibility={"min_runtime": "onnxruntime>=1.17"}))
    assert choose_variant(device(("onnx",), runtimes=(("litert", "1.0"),)), v).name == "a"


@pytest.mark.parametrize(
    ("platform", "expected"), [("android", "ort-arm"), ("ios", "ort-arm"), ("linux", "ort-amd64")]
)
def test_ort_files_go_to_the_platform_they_were_built_for(platform: str, expected: str) -> None:
    v = version(
        variant("ort-arm", "ort", compatibility={"platform": "arm"}),
        variant("ort-amd64", "ort", compatibility={"platform": "amd64"}),
    )
    assert choose_variant(device(("ort",), platform=platform), v).name == expected


def test_an_ort_file_for_the_other_platform_is_used_when_it_is_the_only_one() -> None:
    v = version(variant("ort-arm", "ort", compatibility={"platform": "arm"}))
    assert choose_variant(device(("ort",), platform="linux"), v).name == "ort-arm"


def test_a_variant_made_for_the_device_class_wins_over_format_order() -> None:
    v = version(
        variant("onnx-fp32", "onnx"),
        variant("tflite-int8", "tflite", "int8", profiles=["android-low"]),
    )
    low = device(("onnx", "tflite"), device_class="android-low")
    high = device(("onnx", "tflite"), device_class="android-high")
    assert choose_variant(low, v).name == "tflite-int8"
    assert choose_variant(high, v).name == "onnx-fp32"


def test_for_the_device_class_the_smallest_file_wins_otherwise_fp32() -> None:
    v = version(
        variant("fp32", "tflite", "fp32", profiles=["android-low"]),
        variant("fp16", "tflite", "fp16", profiles=["android-low"]),
        variant("int8", "tflite", "int8", profiles=["android-low"]),
    )
    assert choose_variant(device(("tflite",), device_class="android-low"), v).name == "int8"
    assert choose_variant(device(("tflite",), device_class="android-mid"), v).name == "fp32"
    assert choose_variant(device(("tflite",)), v).name == "fp32"


def test_min_runtime_specs_parse_with_their_operator() -> None:
    parsed = parse_min_runtime("litert>=1.0 (tensorflow-lite>=2.14)")
    assert parsed is not None and parsed[:2] == ("litert", ">=") and str(parsed[2]) == "1.0"
    assert parse_min_runtime("any runtime") is None
