"""Benchmark runs each variant in a subprocess worker and returns well-formed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketml.bench import (
    Benchmark,
    BenchmarkError,
    BenchmarkResult,
    Variant,
    macro_f1,
    results_table,
    zip_size,
)
from pocketml.convert.runtime import open_runner
from pocketml.errors import InvalidInput

FAST = Benchmark(warmup=2, iterations=12, throughput_batch=8, throughput_iterations=2)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import litert_torch
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(),
                               torch.nn.Linear(32, 10))  # fmt: skip
    optimizer = torch.optim.Adam(body.parameters(), 1e-2)
    xt, yt = torch.from_numpy(x[:1400]), torch.from_numpy(y[:1400])
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(body(xt), yt).backward()
        optimizer.step()
    model = torch.nn.Sequential(body, torch.nn.Softmax(dim=-1)).eval()
    folder = tmp_path_factory.mktemp("bench")
    sample = torch.from_numpy(x[:2])
    torch.onnx.export(
        model, (sample,), str(folder / "m.onnx"), input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False, opset_version=17,
    )  # fmt: skip
    litert_torch.convert(model, (sample[:1],)).export(str(folder / "m.tflite"))
    package = folder / "m.mlpackage"  # Core ML is size-only: any bytes stand in for it
    (package / "Data").mkdir(parents=True)
    (package / "Data" / "weights.bin").write_bytes(bytes(4096))
    return {"folder": folder, "x": x[1400:1600], "y": y[1400:1600]}


@pytest.fixture(scope="module")
def results(models: dict[str, object]) -> list[BenchmarkResult]:
    folder = models["folder"]
    assert isinstance(folder, Path)
    variants = [
        Variant("onnx-fp32", folder / "m.onnx", "onnx"),
        Variant("tflite-fp32", folder / "m.tflite", "tflite"),
        Variant("coreml-fp32", folder / "m.mlpackage", "coreml"),
    ]
    return FAST.run(variants, models["x"], models["y"], show_progress=False)  # type: ignore[arg-type]


def test_every_variant_gets_a_json_serialisable_result(results: list[BenchmarkResult]) -> None:
    document = json.loads(json.dumps([r.to_dict() for r in results]))
    assert [d["name"] for d in document] == ["onnx-fp32", "tflite-fp32", "coreml-fp32"]
    expected = {"size_bytes", "zip_size_bytes", "load_ms", "latency_p50_ms", "latency_p95_ms",
                "latency_p99_ms", "throughput_per_s", "peak_memory_mb", "accuracy", "macro_f1",
                "agreement", "is_executed", "note"}  # fmt: skip
    assert expected <= set(document[0])


@pytest.mark.parametrize("index", [0, 1], ids=["onnx", "tflite"])
def test_executed_variant_has_ordered_percentiles_and_positive_rates(
    results: list[BenchmarkResult], index: int
) -> None:
    r = results[index]
    assert r.is_executed
    assert 0 < r.latency_p50_ms <= r.latency_p95_ms <= r.latency_p99_ms  # type: ignore[operator]
    assert r.throughput_per_s > 0  # type: ignore[operator]
    assert r.load_ms > 0  # type: ignore[operator]
    assert r.peak_memory_mb > 0  # type: ignore[operator]  # loading a model uses memory


def test_accuracy_matches_the_runtime_run_in_this_process(
    models: dict[str, object], results: list[BenchmarkResult]
) -> None:
    x, y = models["x"], models["y"]
    runner = open_runner(Path(results[0].path), "onnx")
    expected = float(np.mean(runner.run(x).argmax(axis=1) == y))  # type: ignore[arg-type]
    assert results[0].accuracy == pytest.approx(expected)
    assert results[0].accuracy > 0.8  # type: ignore[operator]


def test_agreement_is_measured_against_the_first_fp32_variant(
    results: list[BenchmarkResult],
) -> None:
    assert results[0].agreement == 1.0
    assert results[1].reference == "onnx-fp32"
    assert results[1].agreement > 0.95  # type: ignore[operator]


def test_coreml_variant_is_size_only_and_says_so(results: list[BenchmarkResult]) -> None:
    coreml = results[2]
    assert not coreml.is_executed
    assert coreml.latency_p95_ms is None
    assert coreml.accuracy is None
    assert "size only" in coreml.note
    assert coreml.size_bytes == 4096


def test_results_table_has_a_row_per_variant(results: list[BenchmarkResult]) -> None:
    assert results_table(results).row_count == 3


def test_broken_model_raises_benchmark_error_naming_the_variant(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    x = np.zeros((4, 1, 8, 8), np.float32)
    with pytest.raises(BenchmarkError, match="broken-variant"):
        FAST.run([Variant("broken-variant", broken, "onnx")], x, np.zeros(4), show_progress=False)


def test_duplicate_variant_names_are_rejected(models: dict[str, object]) -> None:
    folder = models["folder"]
    assert isinstance(folder, Path)
    twice = [Variant("same", folder / "m.onnx", "onnx")] * 2
    with pytest.raises(InvalidInput, match="unique names"):
        FAST.run(twice, models["x"], models["y"], show_progress=False)  # type: ignore[arg-type]


def test_labels_must_match_inputs(models: dict[str, object]) -> None:
    folder = models["folder"]
    assert isinstance(folder, Path)
    with pytest.raises(InvalidInput, match="labels"):
        FAST.run([Variant("v", folder / "m.onnx", "onnx")], np.zeros((4, 1, 8, 8)), np.zeros(3))


def test_macro_f1_matches_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    expected = f1_score(labels, predictions, average="macro")
    assert macro_f1(labels, predictions) == pytest.approx(expected)


def test_zip_size_is_smaller_for_compressible_bytes(tmp_path: Path) -> None:
    file = tmp_path / "zeros.bin"
    file.write_bytes(bytes(100_000))
    assert zip_size(file) < 2_000
