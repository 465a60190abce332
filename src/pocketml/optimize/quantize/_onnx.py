"""ONNX quantizers (ONNX Runtime): dynamic int8, static int8 (QDQ, calibrated) and fp16.

Int8 models go through ONNX Runtime's ``quant_pre_process`` (shape inference and graph
optimization) first, as ONNX Runtime recommends.

scikit-learn graphs (skl2onnx) use ``ai.onnx.ml`` operators that symbolic shape inference
does not know ("Incomplete symbolic shape inference"), so those skip the symbolic pass and
tell the quantizer that untyped tensors are float. A graph with no operator ONNX Runtime
quantizes (a logistic regression is one ``LinearClassifier``) is refused with
``UnsupportedError`` naming its operators, instead of a copy labelled int8 that is not.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput, MissingDependencyError, UnsupportedError
from pocketml.optimize.quantize._base import (
    CALIBRATION_METHODS,
    QuantizedModel,
    check_calibration,
    check_source,
    finish,
    run_library,
)

__all__ = ["OnnxDynamicQuantizer", "OnnxFp16Quantizer", "OnnxStaticQuantizer"]


def _import_ort_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "build", "to quantize ONNX models") from exc
    return quantization


# Operators ONNX Runtime's int8 quantizers rewrite (the weighted ones that matter for size).
QUANTIZABLE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Gather", "Attention"})
_EXTRA_OPTIONS = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT, for ai.onnx.ml outputs


def _graph_facts(src: Path) -> tuple[set[str], bool]:
    """The operator types of ``src`` and whether it uses ``ai.onnx.ml`` operators."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    return ops, any(node.domain == "ai.onnx.ml" for node in model.graph.node)


def check_quantizable(src: Path, label: str) -> bool:
    """Whether ``src`` is a scikit-learn (``ai.onnx.ml``) graph.

    Raises:
        UnsupportedError: no operator in the graph is one int8 quantization rewrites.
    """
    ops, is_ml = _graph_facts(src)
    if not ops & QUANTIZABLE_OPS:
        raise UnsupportedError(
            f"{label}: {src.name} has no operator int8 quantization applies to (it uses "
            f"{', '.join(sorted(ops))}; quantizable: {', '.join(sorted(QUANTIZABLE_OPS))}). "
            "Ship the fp32 file: it is already small; int8 would change nothing."
        )
    return is_ml


def _preprocess(quantization: Any, src: Path, work: Path, *, is_ml: bool = False) -> Path:
    """ONNX Runtime's recommended shape inference + graph optimization before int8."""
    out = work / f"{src.stem}.pre.onnx"
    quantization.shape_inference.quant_pre_process(str(src), str(out), skip_symbolic_shape=is_ml)
    return out


@dataclass(frozen=True)
class OnnxDynamicQuantizer:
    """Dynamic int8: int8 weights, activations quantized at run time.

    Args:
        per_channel: quantize weights per output channel.
        op_types: operator types to quantize; ``None`` keeps ONNX Runtime's default list,
            which turns every Conv into ConvInteger (slow on most CPUs: prefer
            :class:`OnnxStaticQuantizer` for convolutional models, or pass
            ``("MatMul", "Gemm")``).
    """

    per_channel: bool = False
    op_types: tuple[str, ...] | None = None
    method: str = "dynamic"
    precision: str = "int8"
    model_format: str = "onnx"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write a dynamically quantized copy of ``src`` to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not an .onnx file.
            ConversionError: ONNX Runtime failed; the message names the model.
        """
        src, dst = check_source(src, "onnx"), Path(dst)
        quantization = _import_ort_quantization()
        is_ml = run_library(src, "dynamic int8", lambda: check_quantizable(src, "dynamic int8"))

        def step() -> None:
            with tempfile.TemporaryDirectory() as work:
                pre = _preprocess(quantization, src, Path(work), is_ml=is_ml)
                quantization.quantize_dynamic(
                    str(pre),
                    str(dst),
                    per_channel=self.per_channel,
                    weight_type=quantization.QuantType.QInt8,
                    op_types_to_quantize=list(self.op_types) if self.op_types else None,
                    extra_options=dict(_EXTRA_OPTIONS) if is_ml else None,
                )

        run_library(src, "dynamic int8", step)
        return finish(dst, self.method, self.precision, self.model_format)


@dataclass(frozen=True)
class _ArrayReader:
    """Feeds calibration batches to ONNX Runtime (implements CalibrationDataReader)."""

    input_name: str
    data: np.ndarray
    batch_size: int

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        # Equal batches only: the entropy and percentile calibrators stack their histograms
        # and fail on a ragged last batch, so the remainder is dropped.
        size = min(self.batch_size, len(self.data))
        for start in range(0, len(self.data) - size + 1, size):
            yield {self.input_name: self.data[start : start + size]}


def _make_reader(quantization: Any, input_name: str, data: np.ndarray, batch: int) -> Any:
    feeds = _ArrayReader(input_name, data, batch).batches()

    class Reader(quantization.CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    return Reader()


@dataclass(frozen=True)
class OnnxStaticQuantizer:
    """Static int8 in QDQ form with per-channel weights, calibrated on sample inputs.

    Args:
        calibration_data: a sample of training inputs, shape (N, ...), float32.
        calibration_method: "minmax", "entropy" or "percentile".
        per_channel: per-output-channel weight scales (recommended for convolutions).
        activation_type: "uint8" (fastest on x86 and ARM CPUs with ONNX Runtime) or "int8".
        batch_size: calibration batch size.
    """

    calibration_data: np.ndarray
    calibration_method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    batch_size: int = 16
    method: str = "static"
    precision: str = "int8"
    model_format: str = "onnx"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write a statically quantized QDQ copy of ``src`` to ``dst``.

        Raises:
            InvalidInput: bad source, calibration data or parameters.
            ConversionError: ONNX Runtime failed; the message names the model.
        """
        src, dst = check_source(src, "onnx"), Path(dst)
        data = check_calibration(self.calibration_data, "static int8 quantization")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise InvalidInput(
                f"calibration_method must be one of {', '.join(CALIBRATION_METHODS)}; "
                f"got {self.calibration_method!r}."
            )
        if self.activation_type not in ("uint8", "int8"):
            raise InvalidInput(
                f"activation_type must be 'uint8' or 'int8'; got {self.activation_type!r}."
            )
        quantization = _import_ort_quantization()
        methods = {
            "minmax": quantization.CalibrationMethod.MinMax,
            "entropy": quantization.CalibrationMethod.Entropy,
            "percentile": quantization.CalibrationMethod.Percentile,
        }
        activation = (
            quantization.QuantType.QUInt8
            if self.activation_type == "uint8"
            else quantization.QuantType.QInt8
        )

        is_ml = run_library(src, "static int8", lambda: check_quantizable(src, "static int8"))

        def step() -> None:
            import onnx

            with tempfile.TemporaryDirectory() as work:
                pre = _preprocess(quantization, src, Path(work), is_ml=is_ml)
                input_name = onnx.load(str(pre), load_external_data=False).graph.input[0].name
                reader = _make_reader(quantization, input_name, data, max(1, self.batch_size))
                quantization.quantize_static(
                    str(pre),
                    str(dst),
                    reader,
                    quant_format=quantization.QuantFormat.QDQ,
                    per_channel=self.per_channel,
                    activation_type=activation,
                    weight_type=quantization.QuantType.QInt8,
                    calibrate_method=methods[self.calibration_method],
                    calibration_providers=["CPUExecutionProvider"],
                    extra_options=dict(_EXTRA_OPTIONS) if is_ml else None,
                )

        run_library(src, f"static int8 ({self.calibration_method})", step)
        return finish(dst, self.method, self.precision, self.model_format)


@dataclass(frozen=True)
class OnnxFp16Quantizer:
    """fp16 weights and compute; inputs and outputs stay float32 (``keep_io_types``)."""

    method: str = "fp16"
    precision: str = "fp16"
    model_format: str = "onnx"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write an fp16 copy of ``src`` to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not an .onnx file.
            ConversionError: the conversion failed; the message names the model.
        """
        src, dst = check_source(src, "onnx"), Path(dst)
        try:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "build", "for fp16 conversion") from exc

        def step() -> None:
            model = onnx.load(str(src))
            half = convert_float_to_float16(model, keep_io_types=True)
            onnx.save(half, str(dst))

        run_library(src, "fp16", step)
        return finish(dst, self.method, self.precision, self.model_format)
