"""The contract every quantizer meets, and the checks and error translation they share.

A quantizer is a frozen dataclass: its fields are its configuration (STYLE.md rule 10) and
``apply(src, dst)`` writes the quantized file and returns a :class:`QuantizedModel`. The
format modules (``_onnx``, ``_tflite``, ``_coreml``) hold one family each; they all check
their source and calibration data here and run their library through ``run_library``,
which turns any library failure into a :class:`~pocketml.errors.ConversionError` naming the
model and the method.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pocketml.errors import ConversionError, InvalidInput, MissingDependencyError

__all__ = [
    "CALIBRATION_METHODS",
    "QuantizedModel",
    "Quantizer",
    "check_calibration",
    "check_source",
    "file_size",
    "finish",
    "run_library",
]

# The package's name, as before the split, so log filters on it keep working.
logger = logging.getLogger(__package__ or __name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


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


def check_source(src: Path, model_format: str) -> Path:
    """``src`` as a Path, if it exists and has the suffix of ``model_format``; else InvalidInput."""
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


def check_calibration(data: np.ndarray, what: str) -> np.ndarray:
    """``data`` as float32 of shape (N, ...) with N >= 1; else InvalidInput naming ``what``."""
    array = np.asarray(data, dtype=np.float32)
    if array.ndim < 2 or array.shape[0] == 0:
        raise InvalidInput(
            f"{what} needs calibration data of shape (N, ...) with N >= 1; "
            f"got shape {array.shape}. Pass a sample of the training inputs."
        )
    return array


def run_library(model: Path, method: str, step: Callable[[], Any]) -> Any:
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
            f"{str(exc).rstrip('.')}). The model may use operators this quantizer does not "
            "handle: try another quantization method, or ship the fp32 file."
        ) from exc
    finally:
        if captured.getvalue():
            logger.debug("%s quantization of %s: %s", method, model.name, captured.getvalue())


def finish(dst: Path, method: str, precision: str, model_format: str) -> QuantizedModel:
    """Measure and log the written ``dst``: the result every ``apply`` returns."""
    result = QuantizedModel(dst, method, precision, model_format, file_size(dst))
    logger.info("wrote %s (%s %s, %d bytes)", dst, method, precision, result.size_bytes)
    return result
