"""Selection of a variant per device profile on constructed benchmark results."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocketml.bench import BUILTIN_PROFILES, BenchmarkResult, DeviceProfile
from pocketml.errors import InvalidInput
from pocketml.optimize import Budget, VariantSelector, plot_variants, selections_table

HOST = DeviceProfile("host", "the host", ("onnx", "tflite"), 1, 1000.0, 1.0)
GPU_HOST = DeviceProfile("gpu", "has a GPU", ("onnx", "tflite"), 1, 1000.0, 1.0, is_cpu_only=False)


def result(
    name: str,
    *,
    fmt: str = "onnx",
    precision: str = "fp32",
    method: str = "none",
    size_mb: float = 8.0,
    p95: float | None = 2.0,
    accuracy: float | None = 0.95,
) -> BenchmarkResult:
    executed = p95 is not None
    return BenchmarkResult(
        name=name, path=f"/m/{name}", model_format=fmt, precision=precision, method=method,
        size_bytes=int(size_mb * 1e6), zip_size_bytes=int(size_mb * 1e6), is_executed=executed,
        threads=1, latency_p50_ms=p95, latency_p95_ms=p95, latency_p99_ms=p95,
        peak_memory_mb=20.0 if executed else None, accuracy=accuracy,
    )  # fmt: skip


FP32 = result("fp32", size_mb=8.0, p95=2.0, accuracy=0.950)
STATIC = result("static", precision="int8", method="static", size_mb=2.1, p95=1.0, accuracy=0.947)
DYNAMIC = result("dyn", precision="int8", method="dynamic", size_mb=2.0, p95=9.0, accuracy=0.949)
FP16 = result("fp16", precision="fp16", method="fp16", size_mb=4.0, p95=2.6, accuracy=0.950)


def test_accuracy_tie_goes_to_the_faster_variant() -> None:
    [selection] = VariantSelector().select([FP32, STATIC, FP16], [HOST])
    assert selection.variant == STATIC


def test_clearly_better_accuracy_beats_lower_latency() -> None:
    worse = result("bad-int8", precision="int8", method="static", p95=0.5, accuracy=0.90)
    [selection] = VariantSelector().select([FP32, worse], [HOST])
    assert selection.variant == FP32


def test_equal_accuracy_and_latency_goes_to_the_smaller_variant() -> None:
    small = result("small", size_mb=1.0)
    [selection] = VariantSelector().select([FP32, small], [HOST])
    assert selection.variant == small


def test_only_formats_the_profile_supports_are_considered() -> None:
    tflite = result("tflite-int8", fmt="tflite", precision="int8", method="static", p95=0.1)
    onnx_only = DeviceProfile("o", "onnx only", ("onnx",), 1, 1000.0, 1.0)
    [selection] = VariantSelector().select([FP32, tflite], [onnx_only])
    assert selection.variant == FP32


def test_size_budget_excludes_large_variants() -> None:
    selector = VariantSelector({"host": Budget(max_size_mb=3.0)})
    [selection] = selector.select([FP32, FP16, STATIC], [HOST])
    assert selection.variant == STATIC


def test_latency_is_estimated_with_the_profile_speed_factor() -> None:
    slow_device = DeviceProfile("slow", "4x slower", ("onnx",), 1, 1000.0, 0.25)
    selector = VariantSelector({"slow": Budget(max_p95_ms=6.0)})
    [selection] = selector.select([FP32, STATIC], [slow_device])
    assert selection.variant == STATIC
    assert selection.estimated_p95_ms == pytest.approx(4.0)


def test_failed_budget_names_the_closest_variant_and_the_shortfall() -> None:
    selector = VariantSelector({"host": Budget(max_size_mb=1.0, max_accuracy_drop=0.01)})
    [selection] = selector.select([FP32, STATIC, FP16], [HOST])
    assert selection.variant is None
    assert selection.closest == STATIC
    assert [c.budget for c in selection.failures] == ["max_size_mb"]
    assert selection.failures[0].excess == pytest.approx(1.1)
    assert "max_size_mb 1 MB: fails with 2.1 MB (off by 1.1 MB)" in selection.explanation


def test_accuracy_drop_budget_is_measured_against_fp32() -> None:
    lossy = result("lossy", fmt="tflite", precision="int8", method="static", accuracy=0.9)
    tflite_only = DeviceProfile("t", "tflite only", ("tflite",), 1, 1000.0, 1.0)
    selector = VariantSelector({"t": Budget(max_accuracy_drop=0.01)})
    [selection] = selector.select([FP32, lossy], [tflite_only])
    assert selection.variant is None
    assert selection.failures[0].budget == "max_accuracy_drop"
    assert selection.failures[0].actual == pytest.approx(5.0)


def test_cpu_only_profile_never_gets_a_dynamic_variant_slower_than_fp32() -> None:
    selector = VariantSelector({"host": Budget(max_size_mb=10.0)})
    [selection] = selector.select([FP32, DYNAMIC], [HOST])
    assert selection.variant == FP32
    assert "set aside as slower than fp32 on a CPU-only profile: dyn" in selection.explanation


def test_cpu_only_profile_never_gets_an_fp16_variant_slower_than_fp32() -> None:
    best_fp16 = result("fp16", precision="fp16", method="fp16", size_mb=4, p95=2.6, accuracy=0.96)
    [selection] = VariantSelector().select([FP32, best_fp16], [HOST])
    assert selection.variant == FP32


def test_slow_variant_is_chosen_when_the_size_budget_forces_it_and_says_so() -> None:
    selector = VariantSelector({"host": Budget(max_size_mb=5.0)})
    [selection] = selector.select([FP32, FP16], [HOST])
    assert selection.variant == FP16
    assert "1.30× slower than fp32" in selection.explanation
    assert "size budget" in selection.explanation


def test_profile_with_an_accelerator_may_get_the_fp16_variant() -> None:
    best_fp16 = result("fp16", precision="fp16", method="fp16", size_mb=4, p95=2.6, accuracy=0.96)
    [selection] = VariantSelector().select([FP32, best_fp16], [GPU_HOST])
    assert selection.variant == best_fp16


def test_size_only_variant_cannot_meet_a_latency_budget() -> None:
    coreml = result("coreml-int8", fmt="coreml", precision="int8", method="weights", p95=None,
                    accuracy=None, size_mb=2.0)  # fmt: skip
    [selection] = VariantSelector().select([FP32, coreml], [BUILTIN_PROFILES["iphone"]])
    assert selection.variant == FP32


def test_build_json_dict_labels_latency_as_estimated() -> None:
    [selection] = VariantSelector().select([FP32, STATIC], [BUILTIN_PROFILES["android-mid"]])
    document = selection.to_dict()
    assert document["variant"] == "static"
    assert document["latency_is_estimated"] is True
    assert document["estimated_p95_ms"] == pytest.approx(1.0 / 0.45)


def test_budget_for_an_unknown_profile_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="unknown profile 'watch'"):
        VariantSelector({"watch": Budget()}).select([FP32], [HOST])


def test_table_and_plot_are_produced(tmp_path: Path) -> None:
    selections = VariantSelector().select([FP32, STATIC], [HOST, GPU_HOST])
    assert selections_table(selections).row_count == 2
    coreml = result("coreml", fmt="coreml", p95=None, accuracy=None)
    png = plot_variants([FP32, STATIC, FP16, coreml], tmp_path / "variants.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
