"""Core ML quantizers (coremltools) for an ML Program ``.mlpackage``: fp16 and int8 weights.

Core ML cannot execute on Linux: these transform the file (``skip_model_load``) and the
result is measured by size only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.errors import MissingDependencyError
from pocketml.optimize.quantize._base import QuantizedModel, check_source, finish, run_library

__all__ = ["CoremlFp16Quantizer", "CoremlWeightQuantizer"]


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
    run_library(src, label, lambda: _save_mlmodel(transform(_load_mlmodel(src)), dst))


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
        src, dst = check_source(src, "coreml"), Path(dst)
        _transform_mlmodel(src, dst, "fp16", _fp16_compute)
        return finish(dst, self.method, self.precision, self.model_format)


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
        src, dst = check_source(src, "coreml"), Path(dst)
        _transform_mlmodel(src, dst, "int8 weight", _int8_weights)
        return finish(dst, self.method, self.precision, self.model_format)
