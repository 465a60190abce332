"""Conversion to mobile formats, each checked against the source model.

Targets: ``onnx`` (PyTorch or scikit-learn), ``ort`` (ONNX Runtime's mobile format, built
for ``arm`` or ``amd64``), ``tflite`` (PyTorch via litert-torch, run with ai-edge-litert)
and ``coreml`` (PyTorch via coremltools; spec-checked, not executed, on Linux). A model
trained elsewhere comes in through ``from_trained`` (no retraining).

    >>> from pocketml.convert import convert_model
    >>> results = convert_model(model, ["onnx", "tflite"], "out/", samples=x_test)  # doctest: +SKIP
"""

from pocketml.convert.coreml import SpecCheck, check_coreml_spec, to_coreml
from pocketml.convert.onnx import DEFAULT_OPSET, onnx_compatibility, to_onnx
from pocketml.convert.ort import ORT_PLATFORMS, to_ort
from pocketml.convert.parity import ParityReport, check_parity
from pocketml.convert.pipeline import (
    TARGETS,
    ConversionResult,
    convert_model,
    file_sha256,
    path_size,
)
from pocketml.convert.tflite import to_tflite
from pocketml.convert.trained import from_trained, load_trained_file
from pocketml.runtime import RUNNABLE_FORMATS, Runner, open_runner

__all__ = [
    "DEFAULT_OPSET",
    "ORT_PLATFORMS",
    "RUNNABLE_FORMATS",
    "TARGETS",
    "ConversionResult",
    "ParityReport",
    "Runner",
    "SpecCheck",
    "check_coreml_spec",
    "check_parity",
    "convert_model",
    "file_sha256",
    "from_trained",
    "load_trained_file",
    "onnx_compatibility",
    "open_runner",
    "path_size",
    "to_coreml",
    "to_onnx",
    "to_ort",
    "to_tflite",
]
