"""Convert one trained model to several targets, each checked against the source.

``convert_model`` writes ``<out_dir>/model.onnx``, ``model.ort``, ``model.tflite`` and
``model.mlpackage`` (as asked), checks each: numerical parity on held-out samples for the
formats that execute here, the interface spec for Core ML, and returns one
``ConversionResult`` per target with its compatibility record.

It reads and deletes only files it wrote in this run: an ``ort`` target without ``onnx``
exports its intermediate ONNX file into a temporary folder, never into ``out_dir`` (where
a ``model.onnx`` may be someone else's model).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml import protocol
from pocketml.convert.coreml import SpecCheck, check_coreml_spec, coreml_compatibility, to_coreml
from pocketml.convert.onnx import DEFAULT_OPSET, onnx_compatibility, to_onnx
from pocketml.convert.ort import ort_compatibility, to_ort
from pocketml.convert.parity import DEFAULT_ATOL, DEFAULT_MIN_AGREEMENT, ParityReport, check_parity
from pocketml.convert.tflite import tflite_compatibility, to_tflite
from pocketml.errors import (
    ConversionError,
    InvalidInput,
    ParityError,
    PocketMLError,
    UnsupportedError,
)
from pocketml.runtime import open_runner
from pocketml.train.model import TrainedModel

__all__ = ["TARGETS", "ConversionResult", "convert_model", "file_sha256", "path_size"]

TARGETS = protocol.FORMAT_NAMES


def path_size(path: Path) -> int:
    """Size in bytes of a file, or of all files under a directory (``.mlpackage``)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def file_sha256(path: Path) -> str:
    """sha256 hex of a file, or of a directory's files in sorted path order."""
    if not path.is_dir():
        return protocol.file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ConversionResult:
    """One converted file and how it was checked."""

    target: str
    path: Path
    size: int
    sha256: str
    precision: str
    check: ParityReport | SpecCheck
    compatibility: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None

    @property
    def parity_ran(self) -> bool:
        """Whether numbers were compared (False for Core ML on this host)."""
        return isinstance(self.check, ParityReport)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "precision": self.precision,
            "check": self.check.to_dict(),
            "parity_ran": self.parity_ran,
            "compatibility": self.compatibility,
            "accuracy": self.accuracy,
        }


def _accuracy(probabilities: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float(np.mean(probabilities.argmax(axis=1) == labels))


def convert_model(
    model: TrainedModel,
    targets: Sequence[str],
    out_dir: Path | str,
    *,
    samples: np.ndarray,
    labels: np.ndarray | None = None,
    opset: int = DEFAULT_OPSET,
    ort_platform: str = "arm",
    atol: float = DEFAULT_ATOL,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    on_step: Callable[[str], None] | None = None,
    on_failure: Callable[[str, PocketMLError], None] | None = None,
) -> list[ConversionResult]:
    """Convert ``model`` to each of ``targets`` in ``out_dir`` and check each result.

    Args:
        samples: held-out, already-normalized inputs (N, *sample_shape) for parity checks.
        labels: their true classes, to report each file's accuracy.
        ort_platform: "arm" (phones) or "amd64" (x86 hosts) for the ORT file.
        on_step: called with each target before it is converted (progress bars).
        on_failure: called with a target and its error when that target cannot be
            produced (UnsupportedError, ConversionError, ParityError); the other targets
            go on. Without it, the first such error is raised.

    Raises:
        InvalidInput: an unknown target or no samples.
        UnsupportedError / ConversionError / ParityError: from the converters and checks
            (unless ``on_failure`` is given).
    """
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise InvalidInput(
            f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}"
        )
    if len(samples) == 0:
        raise InvalidInput("parity checks need at least one held-out sample")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    reference = model.predict_proba(samples)
    with tempfile.TemporaryDirectory(prefix="pocketml-convert-") as scratch:
        onnx_path = (out_dir if "onnx" in targets else Path(scratch)) / protocol.FORMATS[
            "onnx"
        ].build_file
        return _convert_each(
            model, targets, out_dir, onnx_path, samples, reference, labels, opset, ort_platform,
            atol, min_agreement, on_step, on_failure,
        )  # fmt: skip


def _convert_each(
    model: TrainedModel,
    targets: Sequence[str],
    out_dir: Path,
    onnx_path: Path,
    samples: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    opset: int,
    ort_platform: str,
    atol: float,
    min_agreement: float,
    on_step: Callable[[str], None] | None,
    on_failure: Callable[[str, PocketMLError], None] | None,
) -> list[ConversionResult]:
    results: list[ConversionResult] = []
    onnx_written = False
    for target in dict.fromkeys(targets):  # keep order, drop duplicates
        if on_step:
            on_step(target)
        path = out_dir / protocol.FORMATS[target].build_file
        try:
            if target in ("onnx", "ort") and not onnx_written:
                to_onnx(model, onnx_path, opset=opset)
                onnx_written = True
            result = _convert_one(
                model, target, path, onnx_path, samples, reference, labels, ort_platform,
                atol, min_agreement,
            )  # fmt: skip
        except (UnsupportedError, ConversionError, ParityError) as exc:
            if on_failure is None:
                raise
            on_failure(target, exc)
            continue
        results.append(result)
    return results


def _convert_one(
    model: TrainedModel,
    target: str,
    path: Path,
    onnx_path: Path,
    samples: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    ort_platform: str,
    atol: float,
    min_agreement: float,
) -> ConversionResult:
    check: ParityReport | SpecCheck
    accuracy = None
    if target == "coreml":
        to_coreml(model, path)
        check = check_coreml_spec(model, path)
        compatibility = coreml_compatibility(path)
    else:
        if target == "tflite":
            to_tflite(model, path)
            compatibility = tflite_compatibility(path)
        elif target == "ort":
            to_ort(onnx_path, path, platform=ort_platform)
            compatibility = ort_compatibility(path, ort_platform)
        else:
            compatibility = onnx_compatibility(path)
        output = open_runner(path, target).run(samples)
        check = check_parity(target, reference, output, atol=atol, min_agreement=min_agreement)
        accuracy = _accuracy(output, labels)
    return ConversionResult(
        target=target,
        path=path,
        size=path_size(path),
        sha256=file_sha256(path),
        precision="fp32",
        check=check,
        compatibility=compatibility,
        accuracy=accuracy,
    )
