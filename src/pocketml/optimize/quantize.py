"""Post-training quantization of converted model files: int8 and fp16 variants.

One small verb per method (STYLE.md rule 9): a quantizer stores its configuration and
``apply(src, dst)`` writes the quantized file and returns a :class:`QuantizedModel`.

| format | quantizer                    | method    | precision | library                  |
| ------ | ---------------------------- | --------- | --------- | ------------------------ |
| onnx   | ``OnnxDynamicQuantizer``     | dynamic   | int8      | onnxruntime.quantization |
| onnx   | ``OnnxStaticQuantizer``      | static    | int8      | onnxruntime (QDQ)        |
| onnx   | ``OnnxFp16Quantizer``        | fp16      | fp16      | onnxruntime.transformers |
| tflite | ``TfliteDynamicQuantizer``   | dynamic   | int8      | ai-edge-quantizer        |
| tflite | ``TfliteStaticQuantizer``    | static    | int8      | ai-edge-quantizer        |
| tflite | ``TfliteFp16Quantizer``      | fp16      | fp16      | ai-edge-quantizer        |
| coreml | ``CoremlFp16Quantizer``      | fp16      | fp16      | coremltools              |
| coreml | ``CoremlWeightQuantizer``    | weights   | int8      | coremltools              |

ONNX models go through ONNX Runtime's ``quant_pre_process`` (shape inference and graph
optimization) before int8 quantization, as ONNX Runtime recommends. Every library
failure is translated into :class:`~pocketml.errors.ConversionError` naming the model and
the method.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pocketml.errors import ConversionError, InvalidInput, MissingDependencyError

__all__ = [
    "CALIBRATION_METHODS",
    "CoremlFp16Quantizer",
    "CoremlWeightQuantizer",
    "OnnxDynamicQuantizer",
    "OnnxFp16Quantizer",
    "OnnxStaticQuantizer",
    "QuantizedModel",
    "Quantizer",
    "TfliteDynamicQuantizer",
    "TfliteFp16Quantizer",
    "TfliteStaticQuantizer",
    "file_size",
]

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
_TFLITE_FP16_RECIPE = [
    {
        "regex": ".*",
        "operation": "*",
        "algorithm_key": "float_casting",
        "op_config": {
            "weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
            "compute_precision": "FLOAT",
            "explicit_dequantize": True,
        },
    }
]


@dataclass(frozen=True)
class QuantizedModel:
    """A quantized model file.

    Attributes:
        path: the written file (a directory for a Core ML ``.mlpackage``).
        method: "dynamic", "static", "fp16" or "weights" (weight-only int8).
        precision: "int8" or "fp16".
        model_format: "onnx", "tflite" or "coreml".
        size_bytes: bytes on disk (all files of a directory).
    """

    path: Path
    method: str
    precision: str
    model_format: str
    size_bytes: int

    @property
    def name(self) -> str:
        """A short label for tables: the file name without its suffix."""
        return self.path.stem


class Quantizer(Protocol):
    """What every quantizer offers: its labels and ``apply``."""

    @property
    def method(self) -> str:
        """How the file is made: "dynamic", "static", "fp16" or "weights"."""
        ...

    @property
    def precision(self) -> str:
        """ "int8" or "fp16"."""
        ...

    @property
    def model_format(self) -> str:
        """ "onnx", "tflite" or "coreml"."""
        ...

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Quantize ``src`` into ``dst``; see the concrete classes."""
        ...


def file_size(path: Path) -> int:
    """Bytes on disk of a file, or of every file under a directory (``.mlpackage``).

    Args:
        path: a file or a directory.

    Returns:
        The size in bytes.
    """
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _check_source(src: Path, model_format: str) -> Path:
    src = Path(src)
    suffix = {"onnx": ".onnx", "tflite": ".tflite", "coreml": ".mlpackage"}[model_format]
    if not src.exists():
        raise InvalidInput(
            f"expected an existing {model_format} model at {str(src)!r}; it does not exist. "
            "Convert the model first."
        )
    if src.suffix != suffix:
        raise InvalidInput(
            f"expected a {suffix} file for a {model_format} quantizer; got {src.name!r}. "
            f"Pass the float {model_format} model."
        )
    return src


def _check_calibration(data: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(data, dtype=np.float32)
    if array.ndim < 2 or array.shape[0] == 0:
        raise InvalidInput(
            f"{what} needs calibration data of shape (N, ...) with N >= 1; "
            f"got shape {array.shape}. Pass a sample of the training inputs."
        )
    return array


def _run_library(model: Path, method: str, step: Callable[[], Any]) -> Any:
    """Run ``step`` and translate any library exception into ConversionError.

    The libraries print progress to stdout; it is captured and logged at debug level so a
    caller's output (a Rich table, a JSON document) stays clean.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            return step()
    except (InvalidInput, ConversionError, MissingDependencyError):
        raise
    except Exception as exc:  # onnx, onnxruntime, LiteRT and coremltools raise many types
        raise ConversionError(
            f"{method} quantization of {model.name} failed ({type(exc).__name__}: "
            f"{str(exc).rstrip('.')}). Expected a float model produced by pocketml.convert; "
            "check the file or try another quantization method."
        ) from exc
    finally:
        if captured.getvalue():
            logger.debug("%s quantization of %s: %s", method, model.name, captured.getvalue())


def _done(dst: Path, method: str, precision: str, model_format: str) -> QuantizedModel:
    result = QuantizedModel(dst, method, precision, model_format, file_size(dst))
    logger.info("wrote %s (%s %s, %d bytes)", dst, method, precision, result.size_bytes)
    return result


# --------------------------------------------------------------------------- ONNX


def _import_ort_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "build", "to quantize ONNX models") from exc
    return quantization


def _preprocess(quantization: Any, src: Path, work: Path) -> Path:
    """ONNX Runtime's recommended shape inference + graph optimization before int8."""
    out = work / f"{src.stem}.pre.onnx"
    quantization.shape_inference.quant_pre_process(str(src), str(out), skip_symbolic_shape=False)
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
        src, dst = _check_source(src, "onnx"), Path(dst)
        quantization = _import_ort_quantization()

        def step() -> None:
            with tempfile.TemporaryDirectory() as work:
                pre = _preprocess(quantization, src, Path(work))
                quantization.quantize_dynamic(
                    str(pre),
                    str(dst),
                    per_channel=self.per_channel,
                    weight_type=quantization.QuantType.QInt8,
                    op_types_to_quantize=list(self.op_types) if self.op_types else None,
                )

        _run_library(src, "dynamic int8", step)
        return _done(dst, self.method, self.precision, self.model_format)


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
        src, dst = _check_source(src, "onnx"), Path(dst)
        data = _check_calibration(self.calibration_data, "static int8 quantization")
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

        def step() -> None:
            import onnx

            with tempfile.TemporaryDirectory() as work:
                pre = _preprocess(quantization, src, Path(work))
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
                )

        _run_library(src, f"static int8 ({self.calibration_method})", step)
        return _done(dst, self.method, self.precision, self.model_format)


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
        src, dst = _check_source(src, "onnx"), Path(dst)
        try:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16
        except ImportError as exc:
            raise MissingDependencyError("onnxruntime", "build", "for fp16 conversion") from exc

        def step() -> None:
            model = onnx.load(str(src))
            half = convert_float_to_float16(model, keep_io_types=True)
            onnx.save(half, str(dst))

        _run_library(src, "fp16", step)
        return _done(dst, self.method, self.precision, self.model_format)


# --------------------------------------------------------------------------- TFLite


def _tflite_quantize(src: Path, dst: Path, recipe: Any, calibration: np.ndarray | None) -> None:
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer
    except ImportError as exc:
        raise MissingDependencyError(
            "ai-edge-quantizer", "build", "to quantize TFLite models"
        ) from exc
    engine = quantizer.Quantizer(str(src), recipe)
    result = None
    if engine.need_calibration:
        assert calibration is not None  # checked by the caller
        signatures = Interpreter(model_path=str(src)).get_signature_list()
        key = next(iter(signatures))
        input_name = signatures[key]["inputs"][0]
        samples = [{input_name: row[None, ...]} for row in calibration]
        result = engine.calibrate({key: samples}, num_threads=1)
    quantized = engine.quantize(result, enable_progress_report=False)
    if dst.exists():
        dst.unlink()
    quantized.export_model(str(dst))


@dataclass(frozen=True)
class TfliteDynamicQuantizer:
    """Dynamic-range int8: channel-wise int8 weights, float activations (``dynamic_wi8_afp32``)."""

    method: str = "dynamic"
    precision: str = "int8"
    model_format: str = "tflite"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write a dynamic-range quantized copy of the float ``src`` to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not a .tflite file.
            ConversionError: ai-edge-quantizer failed; the message names the model.
        """
        src, dst = _check_source(src, "tflite"), Path(dst)

        def step() -> None:
            from ai_edge_quantizer import recipe

            _tflite_quantize(src, dst, recipe.dynamic_wi8_afp32(), None)

        _run_library(src, "dynamic-range int8", step)
        return _done(dst, self.method, self.precision, self.model_format)


@dataclass(frozen=True)
class TfliteStaticQuantizer:
    """Full-integer int8 (``static_wi8_ai8``) calibrated on a representative dataset.

    Args:
        calibration_data: representative inputs, shape (N, ...), float32; each row is
            fed as one batch-1 sample.
    """

    calibration_data: np.ndarray
    method: str = "static"
    precision: str = "int8"
    model_format: str = "tflite"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write a full-integer copy of the float ``src`` to ``dst`` (int8 input/output).

        Raises:
            InvalidInput: bad source or calibration data.
            ConversionError: ai-edge-quantizer failed; the message names the model.
        """
        src, dst = _check_source(src, "tflite"), Path(dst)
        data = _check_calibration(self.calibration_data, "full-integer int8 quantization")

        def step() -> None:
            from ai_edge_quantizer import recipe

            _tflite_quantize(src, dst, recipe.static_wi8_ai8(), data)

        _run_library(src, "full-integer int8", step)
        return _done(dst, self.method, self.precision, self.model_format)


@dataclass(frozen=True)
class TfliteFp16Quantizer:
    """fp16 weights (float casting), float32 compute and I/O."""

    method: str = "fp16"
    precision: str = "fp16"
    model_format: str = "tflite"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write an fp16-weight copy of the float ``src`` to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not a .tflite file.
            ConversionError: ai-edge-quantizer failed; the message names the model.
        """
        src, dst = _check_source(src, "tflite"), Path(dst)
        _run_library(src, "fp16", lambda: _tflite_quantize(src, dst, _TFLITE_FP16_RECIPE, None))
        return _done(dst, self.method, self.precision, self.model_format)


# --------------------------------------------------------------------------- Core ML


def _load_mlmodel(src: Path) -> Any:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise MissingDependencyError("coremltools", "build", "to quantize Core ML models") from exc
    return ct.models.MLModel(str(src), skip_model_load=True)


def _save_mlmodel(model: Any, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    model.save(str(dst))


def _transform_mlmodel(src: Path, dst: Path, label: str, transform: Callable[[Any], Any]) -> None:
    """Load the ``.mlpackage`` at ``src``, apply ``transform`` to it, save it at ``dst``."""
    model = _load_mlmodel(src)
    _run_library(src, label, lambda: _save_mlmodel(transform(model), dst))


def _fp16_compute(model: Any) -> Any:
    from coremltools.converters.mil.mil.passes.defs.quantization import FP16ComputePrecision
    from coremltools.models.utils import _apply_graph_pass

    return _apply_graph_pass(
        model, FP16ComputePrecision(op_selector=lambda op: True), skip_model_load=True
    )


def _int8_weights(model: Any) -> Any:
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    config = OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"
    )
    return linear_quantize_weights(model, OptimizationConfig(global_config=config))


@dataclass(frozen=True)
class CoremlFp16Quantizer:
    """fp16 weights and compute for an ML Program (``.mlpackage``); size-only on Linux."""

    method: str = "fp16"
    precision: str = "fp16"
    model_format: str = "coreml"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write an fp16 copy of the float ``src`` .mlpackage to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not an .mlpackage.
            ConversionError: coremltools failed; the message names the model.
        """
        src, dst = _check_source(src, "coreml"), Path(dst)
        _transform_mlmodel(src, dst, "fp16", _fp16_compute)
        return _done(dst, self.method, self.precision, self.model_format)


@dataclass(frozen=True)
class CoremlWeightQuantizer:
    """8-bit linear (symmetric, per-channel) weight quantization of an ``.mlpackage``."""

    method: str = "weights"
    precision: str = "int8"
    model_format: str = "coreml"

    def apply(self, src: Path, dst: Path) -> QuantizedModel:
        """Write an int8-weight copy of the float ``src`` .mlpackage to ``dst``.

        Raises:
            InvalidInput: ``src`` is missing or not an .mlpackage.
            ConversionError: coremltools failed; the message names the model.
        """
        src, dst = _check_source(src, "coreml"), Path(dst)
        _transform_mlmodel(src, dst, "int8 weight", _int8_weights)
        return _done(dst, self.method, self.precision, self.model_format)
