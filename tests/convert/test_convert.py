"""Conversion to ONNX, ORT, TFLite (executed here) and Core ML (spec-checked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pocketml.convert import (
    ParityReport,
    SpecCheck,
    check_parity,
    convert_model,
    open_runner,
    to_onnx,
    to_ort,
    to_tflite,
)
from pocketml.data import load_digits
from pocketml.errors import InvalidInput, ParityError, UnsupportedError
from pocketml.train import TrainConfig, TrainedModel, model_inputs, train


def test_every_target_converts_with_parity_in_the_real_runtimes(
    tmp_path: Path, small_cnn, small_cnn_samples: np.ndarray
) -> None:  # type: ignore[no-untyped-def]
    results = convert_model(
        small_cnn.model,
        ["onnx", "ort", "tflite", "coreml"],
        tmp_path,
        samples=small_cnn_samples,
        labels=small_cnn.splits.test.labels,
    )
    by_target = {r.target: r for r in results}
    for target in ("onnx", "ort", "tflite"):
        check = by_target[target].check
        assert isinstance(check, ParityReport)
        assert check.passed and check.samples == len(small_cnn_samples)
        assert check.max_abs_diff < 1e-4 and check.top1_agreement == 1.0
        assert by_target[target].accuracy == pytest.approx(small_cnn.metrics["accuracy"], abs=0.01)
    coreml = by_target["coreml"].check
    assert isinstance(coreml, SpecCheck) and coreml.passed
    assert coreml.input_shape[1:] == [1, 8, 8] and "not run" in coreml.numerical_parity
    assert by_target["coreml"].path.suffix == ".mlpackage"
    assert "Conv" in by_target["onnx"].compatibility["operators"]
    assert by_target["onnx"].compatibility["opset"] == 17


def test_onnx_file_has_a_dynamic_batch_axis(tmp_path: Path, small_cnn, small_cnn_samples) -> None:  # type: ignore[no-untyped-def]
    path = to_onnx(small_cnn.model, tmp_path / "m.onnx")
    runner = open_runner(path, "onnx")
    assert runner.input_shape[0] == "batch"
    assert runner.run(small_cnn_samples[:7]).shape == (7, 10)


def test_ort_builds_for_arm_and_amd64_and_both_match(
    tmp_path: Path, small_cnn, small_cnn_samples
) -> None:  # type: ignore[no-untyped-def]
    onnx_path = to_onnx(small_cnn.model, tmp_path / "m.onnx")
    reference = open_runner(onnx_path, "onnx").run(small_cnn_samples)
    for platform in ("arm", "amd64"):
        path = to_ort(onnx_path, tmp_path / f"{platform}.ort", platform=platform)
        assert path.read_bytes()[4:8] == b"ORTM"  # the ORT flatbuffer identifier
        assert np.allclose(open_runner(path, "ort").run(small_cnn_samples), reference, atol=1e-5)


def test_sklearn_models_convert_to_onnx_and_ort_with_parity(tmp_path: Path) -> None:
    result = train(load_digits().split(seed=0), "logistic-regression", config=TrainConfig(seed=0))
    samples = model_inputs(result.model, result.splits.test)
    results = convert_model(result.model, ["onnx", "ort"], tmp_path, samples=samples)
    assert all(isinstance(r.check, ParityReport) and r.check.passed for r in results)


@pytest.mark.parametrize("target", ["tflite", "coreml"])
def test_sklearn_to_a_pytorch_only_target_is_unsupported(tmp_path: Path, target: str) -> None:
    result = train(load_digits().split(seed=0), "random-forest", config=TrainConfig(seed=0))
    samples = model_inputs(result.model, result.splits.test)
    with pytest.raises(
        UnsupportedError, match=f"{target}: conversion supports PyTorch.*random-forest"
    ):
        convert_model(result.model, [target], tmp_path, samples=samples)


class _FFTModel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x.flatten(1)).abs()[:, :10]


def test_an_unsupported_operator_is_named_with_the_target(tmp_path: Path, small_cnn) -> None:  # type: ignore[no-untyped-def]
    model = TrainedModel("pytorch", "fft-net", _FFTModel(), small_cnn.model.schema)
    with pytest.raises(UnsupportedError, match=r"onnx: fft-net uses an operator.*fft"):
        to_onnx(model, tmp_path / "fft.onnx")


def test_parity_failure_raises_with_the_numbers() -> None:
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(10), size=50).astype(np.float32)
    shifted = np.roll(reference, 1, axis=1)
    with pytest.raises(ParityError, match=r"max \|Δp\|.*top-1 agreement"):
        check_parity("tflite", reference, shifted)
    ok = check_parity("tflite", reference, reference + 1e-6)
    assert ok.passed and ok.top1_agreement == 1.0


def test_tflite_runs_batches_larger_than_its_export_batch(
    tmp_path: Path, small_cnn, small_cnn_samples
) -> None:  # type: ignore[no-untyped-def]
    path = to_tflite(small_cnn.model, tmp_path / "m.tflite")
    out = open_runner(path, "tflite").run(small_cnn_samples[:5])
    assert out.shape == (5, 10)
    assert np.allclose(out, small_cnn.model.predict_proba(small_cnn_samples[:5]), atol=1e-5)


def test_bad_arguments_are_clear(tmp_path: Path, small_cnn, small_cnn_samples) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=r"opset must be an int in \[13, 21\]; got 3"):
        to_onnx(small_cnn.model, tmp_path / "m.onnx", opset=3)
    with pytest.raises(InvalidInput, match="unknown target"):
        convert_model(small_cnn.model, ["caffe"], tmp_path, samples=small_cnn_samples)
    with pytest.raises(UnsupportedError, match="cannot be executed on this host"):
        open_runner(tmp_path / "m.mlpackage", "coreml")
