"""The plugin contract suites pass on pocketml's own converters and quantizers, and catch
plugins that break a promise (a suite that cannot fail would prove nothing)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketml.convert import to_coreml, to_onnx, to_ort, to_tflite
from pocketml.errors import ConversionError
from pocketml.optimize import (
    CoremlFp16Quantizer,
    CoremlWeightQuantizer,
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
    QuantizedModel,
    TfliteDynamicQuantizer,
    TfliteFp16Quantizer,
)
from pocketml.schema import ModelSchema
from pocketml.testing import DIGITS_SCHEMA, check_converter, check_quantizer, write_model_file
from pocketml.train.model import TrainedModel

ALL_CHECKS = [
    "writes_a_file",
    "matches_the_source_model",
    "is_deterministic",
    "leaves_the_model_unchanged",
    "refuses_bad_input",
]


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    return np.random.default_rng(0).random((32, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def torch_model() -> TrainedModel:
    """A seeded (untrained) 64 -> 10 linear model: parity needs no training."""
    import torch

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    module.eval()
    return TrainedModel("pytorch", "custom", module, ModelSchema.from_dict(DIGITS_SCHEMA))


@pytest.fixture(scope="module")
def sklearn_model(samples: np.ndarray) -> TrainedModel:
    from sklearn.linear_model import LogisticRegression

    labels = np.arange(len(samples)) % 10
    estimator = LogisticRegression(max_iter=200).fit(samples, labels)
    return TrainedModel("sklearn", "custom", estimator, ModelSchema.from_dict(DIGITS_SCHEMA))


def to_ort_via_onnx(model: TrainedModel, path: Path) -> Path:
    return to_ort(to_onnx(model, path.with_suffix(".onnx")), path, platform="amd64")


@pytest.mark.parametrize("framework", ["pytorch", "sklearn"])
@pytest.mark.parametrize(("convert", "model_format"), [(to_onnx, "onnx"), (to_ort_via_onnx, "ort")])
def test_the_onnx_converters_pass_the_converter_contract(
    convert: Any, model_format: str, framework: str, request: pytest.FixtureRequest, samples: Any
) -> None:
    model = request.getfixturevalue("torch_model" if framework == "pytorch" else "sklearn_model")
    assert check_converter(convert, model_format, model, samples) == ALL_CHECKS


@pytest.mark.slow
def test_the_tflite_converter_passes_the_converter_contract(
    torch_model: TrainedModel, samples: np.ndarray
) -> None:
    assert check_converter(to_tflite, "tflite", torch_model, samples, atol=1e-3) == ALL_CHECKS


@pytest.mark.slow
def test_the_coreml_converter_passes_the_converter_contract(
    torch_model: TrainedModel, samples: np.ndarray
) -> None:
    pytest.importorskip("coremltools")
    passed = check_converter(to_coreml, "coreml", torch_model, samples, suffix=".mlpackage")
    assert passed == [c for c in ALL_CHECKS if c != "is_deterministic"]  # not run on Linux


def test_a_converter_that_changes_its_model_fails_the_contract(
    sklearn_model: TrainedModel, samples: np.ndarray
) -> None:
    model = replace(sklearn_model, estimator=copy.deepcopy(sklearn_model.estimator))
    calls = []

    def meddling(model: TrainedModel, path: Path) -> Path:
        if not calls:
            model.estimator.coef_ *= 1.01  # once: the outputs match, the model has changed
        calls.append(path)
        return to_onnx(model, path)

    with pytest.raises(AssertionError, match="changed the model"):
        check_converter(meddling, "onnx", model, samples)


def test_a_converter_that_leaks_library_errors_fails_the_contract(
    sklearn_model: TrainedModel, samples: np.ndarray
) -> None:
    def leaky(model: TrainedModel, path: Path) -> Path:
        if not hasattr(model.estimator, "predict_proba"):
            raise KeyError("estimator")
        return to_onnx(model, path)

    with pytest.raises(AssertionError, match=r"expected a pocketml error.*KeyError"):
        check_converter(leaky, "onnx", sklearn_model, samples)


@pytest.fixture(scope="module")
def onnx_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_file(tmp_path_factory.mktemp("src") / "model.onnx", "onnx", seed=3)


@pytest.mark.parametrize(
    "quantizer",
    [
        OnnxDynamicQuantizer(),
        OnnxStaticQuantizer(np.random.default_rng(1).random((64, 64), dtype=np.float32)),
        OnnxFp16Quantizer(),
    ],
    ids=["dynamic", "static", "fp16"],
)
def test_the_onnx_quantizers_pass_the_quantizer_contract(
    quantizer: Any, onnx_source: Path, samples: np.ndarray
) -> None:
    passed = check_quantizer(quantizer, onnx_source, samples, atol=0.05)
    assert passed == [
        "writes_the_declared_format",
        "matches_the_source_model",
        "is_deterministic",
        "leaves_the_source_unchanged",
        "refuses_bad_input",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", [TfliteDynamicQuantizer(), TfliteFp16Quantizer()])
def test_the_tflite_quantizers_pass_the_quantizer_contract(
    quantizer: Any, torch_model: TrainedModel, samples: np.ndarray, tmp_path: Path
) -> None:
    source = to_tflite(torch_model, tmp_path / "model.tflite")
    assert "matches_the_source_model" in check_quantizer(quantizer, source, samples, atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("quantizer", [CoremlFp16Quantizer(), CoremlWeightQuantizer()])
def test_the_coreml_quantizers_pass_the_quantizer_contract(
    quantizer: Any, torch_model: TrainedModel, samples: np.ndarray, tmp_path: Path
) -> None:
    pytest.importorskip("coremltools")
    source = to_coreml(torch_model, tmp_path / "model.mlpackage")
    assert "refuses_bad_input" in check_quantizer(quantizer, source, samples)


@dataclass(frozen=True)
class _Careless:
    """A quantizer that writes its result and labels it wrongly, and copies garbage."""

    method: str = "dynamic"
    precision: str = "int8"
    model_format: str = "onnx"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        dst.write_bytes(Path(src).read_bytes())
        return QuantizedModel(dst, self.method, "fp16", self.model_format, dst.stat().st_size)


def test_a_quantizer_that_mislabels_its_result_fails_the_contract(
    onnx_source: Path, samples: np.ndarray
) -> None:
    with pytest.raises(AssertionError, match="labels"):
        check_quantizer(_Careless(), onnx_source, samples)


@dataclass(frozen=True)
class _Trusting(_Careless):
    """Labels right, but quantizes whatever it is given."""

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        if not Path(src).exists():
            raise ConversionError(f"{src} is missing")
        dst.write_bytes(Path(src).read_bytes())
        return QuantizedModel(
            dst, self.method, self.precision, self.model_format, dst.stat().st_size
        )


def test_a_quantizer_that_accepts_any_file_fails_the_contract(
    onnx_source: Path, samples: np.ndarray
) -> None:
    with pytest.raises(AssertionError, match="another format: expected a pocketml error"):
        check_quantizer(_Trusting(), onnx_source, samples)
