"""PyTorch -> Core ML ML Program (``.mlpackage``) with coremltools.

Core ML executes only on Apple platforms. Here the converter checks the spec instead of the
numbers: input and output names, shapes and types must match the schema. Every result
says plainly that numerical parity was not run.

The batch axis is flexible (1 to 64) when coremltools can express the model that way. Some
graphs it cannot: a Conv1d net fails with "Cannot add const [is0, 32, 64]" because a shape
computed from the symbolic batch becomes a constant. Those are converted again with a fixed
batch of 1 (an app then predicts one sample per call, the usual case on a phone); the
result says so (``SpecCheck.batch``, ``compatibility["batch"]``) and a warning is logged.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pocketml._native import quiet_native
from pocketml.errors import ConversionError, MissingDependencyError, ParityError, UnsupportedError
from pocketml.train.model import TrainedModel

__all__ = ["MIN_DEPLOYMENT_TARGET", "SpecCheck", "check_coreml_spec", "to_coreml"]

logger = logging.getLogger(__name__)

MIN_DEPLOYMENT_TARGET = "iOS16"
MAX_BATCH = 64
FIXED_BATCH = "fixed-1"
FLEXIBLE_BATCH = f"flexible-1-{MAX_BATCH}"


@dataclass(frozen=True)
class SpecCheck:
    """Outcome of checking a Core ML model's interface against the schema."""

    target: str
    input_name: str
    input_shape: list[int]
    output_name: str
    spec_version: int
    problems: list[str] = field(default_factory=list)
    batch: str = FLEXIBLE_BATCH
    numerical_parity: str = "not run: Core ML executes only on Apple platforms"

    @property
    def passed(self) -> bool:
        """True when the interface matches the schema."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``passed``."""
        return asdict(self) | {"passed": self.passed}

    def summary(self) -> str:
        """One line for tables."""
        if not self.passed:
            return "spec FAIL"
        fixed = ", batch fixed to 1" if self.batch == FIXED_BATCH else ""
        return f"spec ok (numbers not run{fixed})"


def _coremltools() -> Any:
    try:
        import coremltools as ct
    except ImportError as exc:
        raise MissingDependencyError("coremltools", "build", "to convert to Core ML") from exc
    return ct


def to_coreml(model: TrainedModel, path: Path | str, *, precision: str = "fp32") -> Path:
    """Convert a PyTorch ``model`` to an ML Program ``.mlpackage`` directory at ``path``.

    Args:
        precision: "fp32" or "fp16" compute precision.

    Raises:
        UnsupportedError: scikit-learn models or an operator coremltools cannot convert.
        ConversionError: any other conversion failure.
    """
    if model.framework != "pytorch":
        raise UnsupportedError(
            f"coreml: conversion supports PyTorch models; {model.architecture} is a "
            f"{model.framework} model. Convert it to onnx or ort instead."
        )
    ct = _coremltools()
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    compute = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    flexible = (ct.RangeDim(1, MAX_BATCH, default=1), *model.sample_shape)
    try:
        mlmodel = _convert(ct, model, flexible, compute)
    except (ConversionError, UnsupportedError) as exc:
        try:
            mlmodel = _convert(ct, model, (1, *model.sample_shape), compute)
        except (ConversionError, UnsupportedError):
            raise exc from exc.__cause__  # the first failure is the one that explains it
        logger.warning(
            "coreml: %s does not convert with a flexible batch (%s); converted with a "
            "fixed batch of 1",
            model.architecture,
            exc,
        )
    mlmodel.short_description = f"{model.schema.name} ({model.architecture}) by pocketml"
    try:
        mlmodel.save(str(path))
    except Exception as exc:  # coremltools raises RuntimeError/OSError
        raise ConversionError(f"coreml: cannot save {path.name}: {exc}") from exc
    return path


def _convert(ct: Any, model: TrainedModel, shape: tuple[Any, ...], compute: Any) -> Any:
    import torch

    sample = torch.zeros((1, *model.sample_shape), dtype=torch.float32)
    try:
        with quiet_native():
            traced = torch.jit.trace(model.export_module(), sample)
            return ct.convert(
                traced,
                inputs=[ct.TensorType(name="input", shape=shape)],
                outputs=[ct.TensorType(name="probabilities")],
                convert_to="mlprogram",
                compute_precision=compute,
                minimum_deployment_target=getattr(ct.target, MIN_DEPLOYMENT_TARGET),
            )
    except Exception as exc:  # coremltools raises RuntimeError/NotImplementedError/ValueError
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not implemented" in message.lower() or "unsupported" in message.lower():
            raise UnsupportedError(f"coreml: {model.architecture}: {message}") from exc
        raise ConversionError(
            f"coreml conversion of {model.architecture} failed: {message}"
        ) from exc


def batch_of(spec: Any) -> str:
    """``FLEXIBLE_BATCH`` or ``FIXED_BATCH``: how many samples one call takes."""
    array = spec.description.input[0].type.multiArrayType
    ranges = array.shapeRange.sizeRanges
    if ranges and int(ranges[0].upperBound) >= 2:
        return FLEXIBLE_BATCH
    return FIXED_BATCH if [int(d) for d in array.shape][:1] == [1] else "unknown"


def check_coreml_spec(
    model: TrainedModel, path: Path | str, *, raise_on_failure: bool = True
) -> SpecCheck:
    """Check the saved ``.mlpackage`` interface against ``model``'s schema.

    Raises:
        ParityError: names, shapes or types differ (unless ``raise_on_failure`` is False).
    """
    ct = _coremltools()
    spec = ct.utils.load_spec(str(path))
    problems: list[str] = []
    inputs, outputs = list(spec.description.input), list(spec.description.output)
    if len(inputs) != 1 or len(outputs) != 1:
        problems.append(f"expected 1 input and 1 output; got {len(inputs)} and {len(outputs)}")
    first_in, first_out = inputs[0], outputs[0]
    shape = [int(d) for d in first_in.type.multiArrayType.shape]
    if first_in.name != "input":
        problems.append(f"input is named {first_in.name!r}, expected 'input'")
    if first_out.name != "probabilities":
        problems.append(f"output is named {first_out.name!r}, expected 'probabilities'")
    if tuple(shape[1:]) != model.sample_shape:
        problems.append(f"input shape {shape} does not end in {model.sample_shape}")
    batch = batch_of(spec)
    if batch not in (FLEXIBLE_BATCH, FIXED_BATCH):
        problems.append(f"the batch axis is neither flexible nor 1: shape {shape}")
    if first_in.type.WhichOneof("Type") != "multiArrayType":
        problems.append("input is not a multi-array")
    check = SpecCheck(
        target="coreml",
        input_name=first_in.name,
        input_shape=shape,
        output_name=first_out.name,
        spec_version=int(spec.specificationVersion),
        problems=problems,
        batch=batch,
    )
    if raise_on_failure and problems:
        raise ParityError(f"coreml spec check failed: {'; '.join(problems)}")
    return check


def coreml_compatibility(path: Path | str) -> dict[str, Any]:
    """What a device needs: spec version and minimum OS."""
    ct = _coremltools()
    spec = ct.utils.load_spec(str(path))
    return {
        "spec_version": int(spec.specificationVersion),
        "min_os": MIN_DEPLOYMENT_TARGET,
        "batch": batch_of(spec),
    }
