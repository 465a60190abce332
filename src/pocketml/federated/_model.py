"""What makes a version federatable, reading its head, and writing the result's build.

A version is federatable when its ``params["federated"]`` names the classifier head in its
fp32 ONNX variants (docs/federated.md, "Tasks"):

    {"embedding_output": "embedding",   # a graph output: what the head reads (length d)
     "weight": "head.weight",           # initializer of W
     "bias": "head.bias",               # initializer of b (length c)
     "weight_layout": "out_in"}         # "out_in": W stored c x d (torch Linear, Gemm
                                        #  transB=1); "in_out": d x c (MatMul)

Devices compute the embedding with the frozen backbone of the package they hold and train
only the head (``pocketml.fl.train_head``). The result of a task is every fp32 ONNX variant
of the base version with those two initializers replaced: the backbone is byte-for-byte
the same graph, only the head's numbers change. Variants of other formats (TFLite, Core ML,
ORT, quantized) cannot be rewritten here and are left out of the result version.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput, MissingDependencyError
from pocketml.fl import Head
from pocketml.protocol import file_sha256

__all__ = ["HeadSpec", "head_spec_of", "read_head", "write_head"]

_LAYOUTS = ("out_in", "in_out")


@dataclass(frozen=True)
class HeadSpec:
    """Where a version's classifier head lives in its ONNX graph."""

    embedding_output: str
    weight: str
    bias: str
    weight_layout: str = "out_in"

    def to_dict(self) -> dict[str, Any]:
        """The ``params["federated"]`` form."""
        return {
            "embedding_output": self.embedding_output,
            "weight": self.weight,
            "bias": self.bias,
            "weight_layout": self.weight_layout,
        }


def head_spec_of(params: Mapping[str, Any], where: str) -> HeadSpec:
    """Read ``params["federated"]`` of a version.

    Raises:
        InvalidInput: the version is not federatable (says what to add).
    """
    raw = params.get("federated")
    example = (
        '{"embedding_output": "embedding", "weight": "head.weight", "bias": "head.bias", '
        '"weight_layout": "out_in"}'
    )
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            f"{where} is not federatable: its params have no 'federated' object naming the "
            f"classifier head; push it with params.federated = {example} (docs/federated.md)."
        )
    try:
        spec = HeadSpec(
            embedding_output=str(raw["embedding_output"]),
            weight=str(raw["weight"]),
            bias=str(raw["bias"]),
            weight_layout=str(raw.get("weight_layout", "out_in")),
        )
    except KeyError as exc:
        raise InvalidInput(
            f"{where}: params.federated lacks {exc.args[0]!r}; expected {example}."
        ) from exc
    if spec.weight_layout not in _LAYOUTS:
        raise InvalidInput(
            f"{where}: params.federated.weight_layout must be one of {_LAYOUTS}; "
            f"got {spec.weight_layout!r}."
        )
    return spec


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependencyError("onnx", "server", "federated tasks") from exc
    return onnx


def _initializers(model: Any) -> dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def read_head(path: Path, spec: HeadSpec, where: str) -> Head:
    """The head (``W`` as ``d x c``, ``b``) stored in an ONNX file.

    Raises:
        InvalidInput: an initializer is missing or the shapes do not fit a linear head.
    """
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(path))
    found = _initializers(model)
    for name in (spec.weight, spec.bias):
        if name not in found:
            raise InvalidInput(
                f"{where}: the ONNX graph has no initializer {name!r} (params.federated); "
                f"it has {sorted(found)[:10]}."
            )
    weight = numpy_helper.to_array(found[spec.weight]).astype(np.float64)
    bias = numpy_helper.to_array(found[spec.bias]).astype(np.float64).ravel()
    if weight.ndim != 2:
        raise InvalidInput(f"{where}: {spec.weight!r} must be a matrix; got {weight.shape}.")
    if spec.weight_layout == "out_in":
        weight = weight.T
    if weight.shape[1] != bias.size:
        raise InvalidInput(
            f"{where}: {spec.weight!r} ({weight.shape}, as d x c) and {spec.bias!r} "
            f"({bias.size}) do not make one head; check params.federated.weight_layout."
        )
    outputs = [o.name for o in model.graph.output]
    if spec.embedding_output not in outputs:
        raise InvalidInput(
            f"{where}: {spec.embedding_output!r} (params.federated.embedding_output) is not "
            f"an output of the graph (outputs: {outputs}); a device reads the embedding as a "
            "model output, so export the model with it as a second output."
        )
    return Head(weight, bias)


def write_head(source: Path, target: Path, spec: HeadSpec, head: Head) -> str:
    """Copy the ONNX file ``source`` to ``target`` with ``head``'s numbers; return its sha256."""
    onnx = _onnx()
    from onnx import numpy_helper

    model = onnx.load(str(source))
    found = _initializers(model)
    old_w = found[spec.weight]
    weight = head.weights if spec.weight_layout == "in_out" else head.weights.T
    dtype = numpy_helper.to_array(old_w).dtype
    new_w = numpy_helper.from_array(np.ascontiguousarray(weight, dtype=dtype), spec.weight)
    old_b = found[spec.bias]
    bias_shape = numpy_helper.to_array(old_b).shape
    new_b = numpy_helper.from_array(
        head.bias.reshape(bias_shape).astype(numpy_helper.to_array(old_b).dtype), spec.bias
    )
    old_w.CopyFrom(new_w)
    old_b.CopyFrom(new_b)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return file_sha256(target)


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as JSON (the build directory's files)."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True), encoding="utf-8")
