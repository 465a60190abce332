"""PyTorch -> TensorFlow Lite with litert-torch, executed here with ai-edge-litert.

The TFLite file has a batch axis of 1 (the way phones call it); LiteRT resizes it for
batched parity checks. scikit-learn models have no TFLite path: convert them to ONNX/ORT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketml._native import quiet_native
from pocketml.errors import ConversionError, MissingDependencyError, UnsupportedError
from pocketml.train.model import TrainedModel

__all__ = ["tflite_compatibility", "to_tflite"]


def to_tflite(model: TrainedModel, path: Path | str) -> Path:
    """Convert a PyTorch ``model`` to a float32 ``.tflite`` file at ``path``.

    Raises:
        UnsupportedError: a scikit-learn model, or an operator LiteRT cannot lower.
        ConversionError: any other conversion failure.
    """
    if model.framework != "pytorch":
        raise UnsupportedError(
            f"tflite: conversion supports PyTorch models; {model.architecture} is a "
            f"{model.framework} model. Convert it to onnx or ort instead."
        )
    try:
        import torch

        with quiet_native():  # its import logs torch deprecation notes
            import litert_torch
    except ImportError as exc:
        raise MissingDependencyError("litert-torch", "build", "to convert to TFLite") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = torch.zeros((1, *model.sample_shape), dtype=torch.float32)
    try:
        with quiet_native():
            edge_model = litert_torch.convert(model.export_module(), (sample,))
            edge_model.export(str(path))
    except Exception as exc:  # litert-torch raises torch.export and MLIR errors
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not supported" in message.lower() or "unsupported" in message.lower():
            raise UnsupportedError(
                f"tflite: {model.architecture} uses an operator LiteRT cannot lower: {message}"
            ) from exc
        raise ConversionError(
            f"tflite conversion of {model.architecture} failed: {message}"
        ) from exc
    return path


def tflite_compatibility(path: Path | str) -> dict[str, Any]:
    """What a device needs to run this TFLite file: its builtin operators and runtime."""
    from ai_edge_litert.interpreter import Interpreter

    with quiet_native():
        interpreter = Interpreter(model_path=str(path))
    operators = sorted({str(op["op_name"]) for op in interpreter._get_ops_details()})
    return {"operators": operators, "min_runtime": "litert>=1.0 (tensorflow-lite>=2.14)"}
