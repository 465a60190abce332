"""Each quantizer on a small digits CNN: a file is produced, it runs in its runtime, and
its accuracy stays within a stated bound of the fp32 model's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pocketml.convert.runtime import open_runner
from pocketml.errors import ConversionError, InvalidInput
from pocketml.optimize import (
    CoremlFp16Quantizer,
    CoremlWeightQuantizer,
    OnnxDynamicQuantizer,
    OnnxFp16Quantizer,
    OnnxStaticQuantizer,
    TfliteDynamicQuantizer,
    TfliteFp16Quantizer,
    TfliteStaticQuantizer,
)

# int8 may lose at most 2 points of held-out accuracy on digits, fp16 at most 0.5.
INT8_MAX_DROP = 0.02
FP16_MAX_DROP = 0.005


@dataclass(frozen=True)
class Digits:
    model: object
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    onnx: Path
    tflite: Path


def _train_cnn(x: np.ndarray, y: np.ndarray) -> object:
    import torch

    torch.manual_seed(0)
    body = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 16, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    optimizer = torch.optim.Adam(body.parameters(), 3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(0)
    for _ in range(6):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(body(xt[idx]), yt[idx]).backward()
            optimizer.step()
    return torch.nn.Sequential(body, torch.nn.Softmax(dim=-1)).eval()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    import litert_torch
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    model = _train_cnn(x[train], y[train])
    folder = tmp_path_factory.mktemp("digits")
    sample = torch.from_numpy(x[:2])
    onnx_path = folder / "digits.onnx"
    torch.onnx.export(
        model, (sample,), str(onnx_path), input_names=["input"],
        output_names=["probabilities"],
        dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
        dynamo=False, opset_version=17,
    )  # fmt: skip
    tflite_path = folder / "digits.tflite"
    litert_torch.convert(model, (sample[:1],)).export(str(tflite_path))
    return Digits(model, x[train], x[test], y[test], onnx_path, tflite_path)


def _accuracy(path: Path, model_format: str, digits: Digits) -> float:
    runner = open_runner(path, model_format)
    return float(np.mean(runner.run(digits.x_test).argmax(axis=1) == digits.y_test))


def test_fp32_reference_model_is_accurate(digits: Digits) -> None:
    assert _accuracy(digits.onnx, "onnx", digits) > 0.95


@pytest.mark.parametrize(
    ("make", "max_drop", "min_ratio"),
    [
        (lambda d: OnnxDynamicQuantizer(), INT8_MAX_DROP, 3.0),
        (lambda d: OnnxStaticQuantizer(d.x_train[:256]), INT8_MAX_DROP, 3.0),
        (lambda d: OnnxStaticQuantizer(d.x_train[:256], "entropy"), INT8_MAX_DROP, 3.0),
        (lambda d: OnnxStaticQuantizer(d.x_train[:256], "percentile"), INT8_MAX_DROP, 3.0),
        (lambda d: OnnxFp16Quantizer(), FP16_MAX_DROP, 1.8),
    ],
    ids=["dynamic", "static-minmax", "static-entropy", "static-percentile", "fp16"],
)
def test_onnx_quantizer_shrinks_model_and_keeps_accuracy(
    digits: Digits, tmp_path: Path, make: object, max_drop: float, min_ratio: float
) -> None:
    quantizer = make(digits)  # type: ignore[operator]
    result = quantizer.apply(digits.onnx, tmp_path / f"q-{quantizer.method}.onnx")
    assert result.path.is_file()
    assert result.model_format == "onnx"
    assert digits.onnx.stat().st_size / result.size_bytes >= min_ratio
    fp32 = _accuracy(digits.onnx, "onnx", digits)
    assert _accuracy(result.path, "onnx", digits) >= fp32 - max_drop


def test_static_onnx_model_is_in_qdq_form_with_per_channel_weights(
    digits: Digits, tmp_path: Path
) -> None:
    import onnx

    result = OnnxStaticQuantizer(digits.x_train[:64]).apply(digits.onnx, tmp_path / "s.onnx")
    graph = onnx.load(str(result.path)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "ConvInteger" not in ops
    weight_scales = [
        init for init in graph.initializer if init.name.endswith("_scale") and init.dims
    ]
    assert any(scale.dims[0] > 1 for scale in weight_scales)  # one scale per channel


def test_fp16_onnx_model_keeps_float32_inputs_and_outputs(digits: Digits, tmp_path: Path) -> None:
    import onnx

    result = OnnxFp16Quantizer().apply(digits.onnx, tmp_path / "h.onnx")
    graph = onnx.load(str(result.path)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer)


@pytest.mark.parametrize(
    ("make", "max_drop", "min_ratio"),
    [
        (lambda d: TfliteDynamicQuantizer(), INT8_MAX_DROP, 2.5),
        (lambda d: TfliteStaticQuantizer(d.x_train[:128]), INT8_MAX_DROP, 2.5),
        (lambda d: TfliteFp16Quantizer(), FP16_MAX_DROP, 1.6),
    ],
    ids=["dynamic", "full-integer", "fp16"],
)
def test_tflite_quantizer_shrinks_model_and_keeps_accuracy(
    digits: Digits, tmp_path: Path, make: object, max_drop: float, min_ratio: float
) -> None:
    quantizer = make(digits)  # type: ignore[operator]
    result = quantizer.apply(digits.tflite, tmp_path / f"q-{quantizer.method}.tflite")
    assert result.model_format == "tflite"
    assert digits.tflite.stat().st_size / result.size_bytes >= min_ratio
    fp32 = _accuracy(digits.tflite, "tflite", digits)
    assert _accuracy(result.path, "tflite", digits) >= fp32 - max_drop


def test_full_integer_tflite_model_has_int8_input(digits: Digits, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    result = TfliteStaticQuantizer(digits.x_train[:32]).apply(digits.tflite, tmp_path / "s.tflite")
    interpreter = Interpreter(model_path=str(result.path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8


@pytest.fixture(scope="module")
def mlpackage(digits: Digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import coremltools as ct
    import torch

    sample = torch.from_numpy(digits.x_test[:1])
    traced = torch.jit.trace(digits.model, sample)
    mlmodel = ct.convert(
        traced,
        inputs=[ct.TensorType(name="input", shape=tuple(sample.shape))],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS16,
    )
    path = tmp_path_factory.mktemp("coreml") / "digits.mlpackage"
    mlmodel.save(str(path))
    return path


@pytest.mark.parametrize(
    ("quantizer", "precision"),
    [(CoremlFp16Quantizer(), "fp16"), (CoremlWeightQuantizer(), "int8")],
    ids=["fp16", "int8-weights"],
)
def test_coreml_quantizer_writes_a_smaller_mlpackage(
    mlpackage: Path, tmp_path: Path, quantizer: object, precision: str
) -> None:
    from pocketml.optimize import file_size

    result = quantizer.apply(mlpackage, tmp_path / "q.mlpackage")  # type: ignore[attr-defined]
    assert result.path.is_dir()
    assert result.precision == precision
    assert result.size_bytes < file_size(mlpackage) * 0.75


def test_missing_model_is_rejected_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"nope\.onnx"):
        OnnxDynamicQuantizer().apply(tmp_path / "nope.onnx", tmp_path / "out.onnx")


def test_static_quantizer_rejects_an_unknown_calibration_method(
    digits: Digits, tmp_path: Path
) -> None:
    quantizer = OnnxStaticQuantizer(digits.x_train[:8], calibration_method="median")
    with pytest.raises(InvalidInput, match="minmax, entropy, percentile"):
        quantizer.apply(digits.onnx, tmp_path / "out.onnx")


def test_static_quantizer_rejects_empty_calibration_data(digits: Digits, tmp_path: Path) -> None:
    quantizer = TfliteStaticQuantizer(np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(InvalidInput, match="calibration data"):
        quantizer.apply(digits.tflite, tmp_path / "out.tflite")


def test_library_failure_becomes_conversion_error_naming_model_and_method(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ConversionError, match=r"dynamic int8 quantization of broken\.onnx"):
        OnnxDynamicQuantizer().apply(broken, tmp_path / "out.onnx")
