"""TFLite quantizers (ai-edge-quantizer recipes): dynamic-range int8, full-integer int8, fp16.

The float ``.tflite`` file comes from ``pocketml.convert``; full-integer quantization is
calibrated with one batch-1 sample per row of the representative data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import MissingDependencyError
from pocketml.optimize.quantize._base import (
    QuantizedModel,
    check_calibration,
    check_source,
    finish,
    run_library,
)

__all__ = ["TfliteDynamicQuantizer", "TfliteFp16Quantizer", "TfliteStaticQuantizer"]

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
        src, dst = check_source(src, "tflite"), Path(dst)

        def step() -> None:
            from ai_edge_quantizer import recipe

            _tflite_quantize(src, dst, recipe.dynamic_wi8_afp32(), None)

        run_library(src, "dynamic-range int8", step)
        return finish(dst, self.method, self.precision, self.model_format)


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
        src, dst = check_source(src, "tflite"), Path(dst)
        data = check_calibration(self.calibration_data, "full-integer int8 quantization")

        def step() -> None:
            from ai_edge_quantizer import recipe

            _tflite_quantize(src, dst, recipe.static_wi8_ai8(), data)

        run_library(src, "full-integer int8", step)
        return finish(dst, self.method, self.precision, self.model_format)


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
        src, dst = check_source(src, "tflite"), Path(dst)
        run_library(src, "fp16", lambda: _tflite_quantize(src, dst, _TFLITE_FP16_RECIPE, None))
        return finish(dst, self.method, self.precision, self.model_format)
