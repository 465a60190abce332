"""PyTorch module or scikit-learn estimator -> ONNX, with a dynamic batch axis.

An imported ONNX file (``from_trained``) is written as it was imported (its own opset).

PyTorch models go through ``torch.onnx.export`` (TorchScript exporter: stable op coverage
for mobile CNNs, fast); scikit-learn models and pipelines through skl2onnx with plain
probability outputs (no ZipMap). Inputs are named "input", outputs "probabilities".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pocketml._native import quiet_native
from pocketml.errors import ConversionError, InvalidInput, MissingDependencyError, UnsupportedError
from pocketml.train.model import TrainedModel

__all__ = ["DEFAULT_OPSET", "OPSET_RANGE", "onnx_compatibility", "to_onnx"]

DEFAULT_OPSET = 17
OPSET_RANGE = (13, 21)
# The first ONNX Runtime release that implements each opset (from ORT's compatibility table).
_MIN_ORT_FOR_OPSET = {
    13: "1.7",
    14: "1.10",
    15: "1.11",
    16: "1.12",
    17: "1.13",
    18: "1.14",
    19: "1.16",
    20: "1.17",
    21: "1.20",
}


def _check_opset(opset: int) -> None:
    low, high = OPSET_RANGE
    if not isinstance(opset, int) or not low <= opset <= high:
        raise InvalidInput(
            f"opset must be an int in [{low}, {high}]; got {opset}. Pass --opset 17."
        )


def to_onnx(model: TrainedModel, path: Path | str, *, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` to an ONNX file at ``path`` that outputs probabilities.

    Raises:
        InvalidInput: opset out of range.
        UnsupportedError: an operator or estimator the exporter cannot express.
        ConversionError: any other export failure.
    """
    _check_opset(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if model.framework == "sklearn":
        return _sklearn_to_onnx(model, path, opset)
    if model.framework == "onnx":  # imported as a file: already ONNX, names normalized
        path.write_bytes(bytes(model.estimator))
        return path
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "to export PyTorch models") from exc
    module = model.export_module()
    sample = torch.zeros((1, *model.sample_shape), dtype=torch.float32)
    try:
        with quiet_native():
            torch.onnx.export(
                module,
                (sample,),
                str(path),
                input_names=["input"],
                output_names=["probabilities"],
                dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many types; name the operator when it does
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "not supported" in message or "Unsupported" in type(exc).__name__:
            raise UnsupportedError(
                f"onnx: {model.architecture} uses an operator ONNX opset {opset} cannot "
                f"express: {message}"
            ) from exc
        raise ConversionError(f"onnx export of {model.architecture} failed: {message}") from exc
    return path


def _sklearn_to_onnx(model: TrainedModel, path: Path, opset: int) -> Path:
    try:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
    except ImportError as exc:
        raise MissingDependencyError("skl2onnx", "build", "to export scikit-learn models") from exc
    features = int(np.prod(model.sample_shape))
    estimator = model.estimator
    try:
        onnx_model = convert_sklearn(
            estimator,
            initial_types=[("input", FloatTensorType([None, features]))],
            target_opset={"": opset, "ai.onnx.ml": 3},
            options={id(estimator): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises RuntimeError/NameError for unknown estimators
        raise UnsupportedError(
            f"onnx: cannot convert scikit-learn {type(estimator).__name__}: {exc}"
        ) from exc
    graph = onnx_model.graph
    for output in graph.output:  # skl2onnx names them "label" and "probabilities"
        if output.name == "probabilities":
            graph.output.remove(output)
            graph.output.insert(0, output)
            break
    path.write_bytes(onnx_model.SerializeToString())
    return path


def onnx_compatibility(path: Path | str) -> dict[str, Any]:
    """What a device needs to run this ONNX file: opsets, operators, minimum runtime."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    operators = sorted({node.op_type for node in model.graph.node})
    default_opset = opsets.get("ai.onnx", DEFAULT_OPSET)
    return {
        "opset": default_opset,
        "opsets": opsets,
        "ir_version": int(model.ir_version),
        "operators": operators,
        "min_runtime": f"onnxruntime>={_MIN_ORT_FOR_OPSET.get(default_opset, '1.20')}",
    }
