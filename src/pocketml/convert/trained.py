"""Import a model trained elsewhere, without retraining: the "bring your own model" door.

``from_trained`` wraps a PyTorch module (or TorchScript file), a fitted scikit-learn
estimator or pipeline (object or pickle/joblib file) or an ONNX file into a
``TrainedModel`` whose schema is inferred from an example batch. From there the model goes
through ``convert_model``, ``pocketml convert`` and ``pocketml build`` like a model pocketml
trained itself. ``load_trained_file`` reads the file forms; pickles run code when loaded,
so it reads them only when the caller says the file is trusted.

    >>> from pocketml.convert import convert_model, from_trained
    >>> model = from_trained(net, example=x[:8], labels=["walk", "run", "sit"])  # doctest: +SKIP
    >>> convert_model(model, ["onnx", "tflite"], "out/", samples=x_test)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput, MissingDependencyError, NotFound, UnsupportedError
from pocketml.schema import ModelSchema, Normalization
from pocketml.train.model import TrainedModel, make_schema

__all__ = ["OUTPUT_KINDS", "TRUSTED_ONLY_SUFFIXES", "from_trained", "load_trained_file"]

logger = logging.getLogger(__name__)

OUTPUT_KINDS = ("logits", "probabilities")
# File kinds that are pickles: loading one runs whatever code its author put in it.
TRUSTED_ONLY_SUFFIXES = (".pkl", ".pickle", ".joblib")
_LAYOUTS = {2: "NC", 3: "NCL", 4: "NCHW"}


def from_trained(
    model: Any,
    *,
    example: Any,
    labels: Sequence[str],
    name: str = "model",
    layout: str | None = None,
    output: str = "logits",
    normalization: Normalization | None = None,
    value_range: tuple[float, float] | None = None,
    schema: ModelSchema | None = None,
) -> TrainedModel:
    """Wrap an already-trained model so pocketml can convert, optimize and ship it.

    Args:
        model: a ``torch.nn.Module`` (or TorchScript module) returning logits (or
            probabilities, see ``output``), a fitted scikit-learn classifier or pipeline
            (anything with ``predict_proba``), or ONNX bytes / an ``onnx.ModelProto``.
        example: a batch of model inputs (N, ...) exactly as the model takes them; it
            fixes the input shape and is run once to check the class count.
        labels: one class name per model output.
        layout: "NC", "NCL" or "NCHW"; by default from the example's rank.
        output: "logits" (a softmax is added for export) or "probabilities"; PyTorch and
            ONNX only (scikit-learn gives probabilities).
        normalization: what a device applies to raw inputs before the model; ``None``
            when the model takes raw values (e.g. a pipeline that starts with a scaler).
        schema: a complete schema to use instead of the inferred one.

    Returns:
        A ``TrainedModel`` with architecture "custom"; nothing is retrained.

    Raises:
        InvalidInput: an example of the wrong rank, labels that do not match the outputs,
            an unknown output kind, or a model of no known kind.
    """
    x = np.ascontiguousarray(np.asarray(example, dtype=np.float32))
    if x.ndim < 2 or len(x) == 0:
        raise InvalidInput(
            f"example must be a non-empty batch (N, ...) of model inputs; got shape {x.shape}"
        )
    if output not in OUTPUT_KINDS:
        raise InvalidInput(f"output must be one of {', '.join(OUTPUT_KINDS)}; got {output!r}")
    framework = _framework_of(model)
    if schema is None:
        chosen = layout or _LAYOUTS.get(x.ndim)
        if chosen is None:
            raise InvalidInput(
                f"cannot infer a layout for inputs of rank {x.ndim} (shape {x.shape}); "
                "pass layout= and a schema= that describes them"
            )
        schema = make_schema(
            name,
            tuple(int(d) for d in x.shape[1:]),
            list(labels),
            layout=chosen,
            normalization=normalization,
            value_range=value_range,
        )
    estimator = model
    if framework == "onnx":
        estimator = _normalized_onnx(model, output)
    elif framework == "pytorch" and output == "probabilities":
        estimator = _log_module(model)  # pocketml adds a softmax on export: log undoes it
    trained = TrainedModel(
        framework, "custom", estimator, schema, {"imported": True, "output": output}
    )
    probabilities = trained.predict_proba(x[:8])
    if probabilities.ndim != 2 or probabilities.shape[1] != len(schema.labels):
        raise InvalidInput(
            f"the model gives outputs of shape {probabilities.shape} for {len(x[:8])} "
            f"samples; expected ({len(x[:8])}, {len(schema.labels)}) for the labels "
            f"{list(schema.labels)}. Pass one label per output class."
        )
    return trained


def _framework_of(model: Any) -> str:
    if isinstance(model, bytes | bytearray) or type(model).__name__ == "ModelProto":
        return "onnx"
    if hasattr(model, "predict_proba"):
        return "sklearn"
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "to import PyTorch models") from exc
    if isinstance(model, torch.nn.Module):
        return "pytorch"
    raise InvalidInput(
        f"model must be a torch.nn.Module, a fitted scikit-learn classifier (with "
        f"predict_proba) or ONNX bytes; got {type(model).__name__}. A file? Use "
        "load_trained_file(path) or `pocketml import`."
    )


def _log_module(module: Any) -> Any:
    import torch

    class LogProbabilities(torch.nn.Module):
        """Turns a probability output into log-probabilities (softmax of them is identity)."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(self.inner(x).clamp_min(1e-12))

    return LogProbabilities(module)


def _normalized_onnx(model: Any, output: str) -> bytes:
    """The ONNX model with input "input", output "probabilities" and a dynamic batch."""
    try:
        import onnx
        from onnx import helper
    except ImportError as exc:
        raise MissingDependencyError("onnx", "build", "to import ONNX files") from exc
    try:
        proto = onnx.load_from_string(bytes(model)) if not hasattr(model, "graph") else model
        proto = onnx.ModelProto.FromString(proto.SerializeToString())  # never edit theirs
    except Exception as exc:  # onnx raises DecodeError and friends
        raise InvalidInput(f"the bytes are not an ONNX model: {exc}") from exc
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedError(
            f"onnx: pocketml serves models with one input; this file has {len(inputs)} "
            f"({', '.join(i.name for i in inputs)})"
        )
    outputs = list(graph.output)
    chosen = next((o for o in outputs if o.name == "probabilities"), None)
    chosen = chosen or next(
        (o for o in outputs if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT), None
    )
    if chosen is None:
        raise UnsupportedError("onnx: the file has no float output to read class scores from")
    renames = {inputs[0].name: "input"}
    if output == "probabilities":
        renames[chosen.name] = "probabilities"
    else:
        renames[chosen.name] = "logits"
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    inputs[0].name = "input"
    chosen.name = renames[chosen.name]
    for value in (inputs[0], chosen):  # a fixed batch would refuse other batch sizes
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    if output == "logits":
        graph.node.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
        probabilities = onnx.ValueInfoProto.FromString(chosen.SerializeToString())
        probabilities.name = "probabilities"
        graph.output.remove(chosen)
        graph.output.insert(0, probabilities)
    else:
        graph.output.remove(chosen)
        graph.output.insert(0, chosen)
    while len(graph.output) > 1:  # one output: extra ones (sklearn's "label") go
        graph.output.pop()
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError
        raise InvalidInput(f"the ONNX model is not valid: {exc}") from exc
    return bytes(proto.SerializeToString())


def load_trained_file(path: Path | str, *, trust_pickle: bool = False) -> Any:
    """Read a trained model from a file, for ``from_trained``.

    ``.onnx`` gives the file's bytes; ``.pt``/``.pth`` a TorchScript module (or, only
    when ``trust_pickle``, a whole pickled ``torch.nn.Module``); ``.pkl``/``.joblib`` a
    scikit-learn estimator (only when ``trust_pickle``: unpickling runs code).

    Raises:
        NotFound: the file does not exist.
        InvalidInput: an unknown suffix, an unreadable file, or a pickle not trusted.
    """
    path = Path(path)
    if not path.exists():
        raise NotFound(f"model file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path.read_bytes()
    if suffix in (".pt", ".pth"):
        return _load_torch(path, trust_pickle)
    if suffix in TRUSTED_ONLY_SUFFIXES:
        if not trust_pickle:
            raise InvalidInput(
                f"{path.name} is a pickle: loading it runs any code its author put in it. "
                "Load only files you made or trust, with --trust-pickle "
                "(trust_pickle=True); or export the model to ONNX and import that."
            )
        logger.warning("unpickling %s: only load files you trust", path)
        try:
            if suffix == ".joblib":
                import joblib

                return joblib.load(path)
            with open(path, "rb") as fh:
                return pickle.load(fh)  # trusted by the caller, see above
        except Exception as exc:  # pickle raises anything its payload raises
            raise InvalidInput(f"cannot unpickle {path.name}: {exc}") from exc
    raise InvalidInput(
        f"cannot import {path.name}: expected .onnx, .pt/.pth (PyTorch) or "
        ".pkl/.joblib (scikit-learn)"
    )


def _load_torch(path: Path, trust_pickle: bool) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "to import PyTorch models") from exc
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as script_exc:  # not TorchScript: a pickled module, perhaps
        if not trust_pickle:
            raise InvalidInput(
                f"{path.name} is not TorchScript; a whole pickled module runs code when "
                "loaded. Save it with torch.jit.save(torch.jit.script(model), path), or "
                "pass --trust-pickle (trust_pickle=True) for a file you trust."
            ) from script_exc
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle raises anything its payload raises
        raise InvalidInput(f"cannot load {path.name} as a PyTorch module: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise InvalidInput(
            f"{path.name} holds a {type(module).__name__}, not a torch.nn.Module (a "
            "state_dict needs its model class: build the module, load_state_dict, then "
            "call from_trained(module, ...))"
        )
    return module.eval()
