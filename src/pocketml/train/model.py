"""TrainedModel: a trained PyTorch module or scikit-learn estimator with its schema.

A TrainedModel predicts from raw features (it applies the schema's normalization, exactly
as a device will), saves to and loads from a directory, and hands converters the module
that outputs probabilities.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.errors import InvalidInput, NotFound
from pocketml.schema import InputSpec, ModelSchema, Normalization, OutputSpec, PreprocessStep
from pocketml.train.architectures import TORCH_ARCHITECTURES, build_torch_model, with_softmax

__all__ = ["TrainedModel", "make_schema"]

_MODEL_JSON = "model.json"


def make_schema(
    name: str,
    sample_shape: tuple[int, ...],
    class_names: tuple[str, ...] | list[str],
    *,
    layout: str,
    normalization: Normalization | None,
    value_range: tuple[float, float] | None = None,
) -> ModelSchema:
    """The ModelSchema of a pocketml-trained classifier (input "input", output "probabilities")."""
    steps = [PreprocessStep(op="to_float")]
    if normalization is not None:
        steps.append(PreprocessStep(op="normalize", params=normalization.to_dict()))
    return ModelSchema(
        name=name,
        inputs=[
            InputSpec(
                name="input",
                shape=[None, *sample_shape],
                layout=layout,  # type: ignore[arg-type]  # checked by InputSpec
                value_range=value_range,
                normalization=normalization,
            )
        ],
        outputs=[OutputSpec(name="probabilities", kind="probabilities", labels=list(class_names))],
        preprocessing=steps,
    )


@dataclass
class TrainedModel:
    """A trained classifier and the schema of its inputs and outputs.

    Attributes:
        framework: "pytorch", "sklearn" or "onnx" (an imported ONNX file; its estimator is
            the file's bytes, with input "input" and output "probabilities").
        architecture: a built-in architecture name, or "custom" for a user's own model.
        estimator: the torch module (returning logits) or the fitted sklearn estimator.
        schema: the ModelSchema (normalization included).
        params: how it was built (training parameters), for lineage.
    """

    framework: str
    architecture: str
    estimator: Any
    schema: ModelSchema
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one (normalized) input sample."""
        return self.schema.input.sample_shape

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for already-normalized inputs (N, *sample_shape)."""
        x = np.asarray(x, dtype=np.float32)
        if self.framework == "sklearn":
            return np.asarray(self.estimator.predict_proba(x.reshape(x.shape[0], -1)), np.float32)
        if self.framework == "onnx":
            out = self._onnx_session().run(["probabilities"], {"input": x})[0]
            return np.asarray(out, dtype=np.float32)
        import torch

        module = self.estimator.eval()
        with torch.no_grad():
            logits = module(torch.from_numpy(np.ascontiguousarray(x)))
            return torch.softmax(logits, dim=-1).numpy()

    def _onnx_session(self) -> Any:
        session = self.__dict__.get("_session")
        if session is None:
            import onnxruntime

            session = onnxruntime.InferenceSession(
                bytes(self.estimator), providers=["CPUExecutionProvider"]
            )
            self.__dict__["_session"] = session
        return session

    def predict_raw(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities for raw inputs: normalizes them as the schema says first."""
        return self.predict_proba(self.schema.normalize(raw))

    def export_module(self) -> Any:
        """The torch module that outputs probabilities, in eval mode (PyTorch models only)."""
        if self.framework != "pytorch":
            raise InvalidInput(f"{self.architecture} is a {self.framework} model, not PyTorch")
        if not callable(getattr(self.estimator, "eval", None)):  # every exporter starts here
            raise InvalidInput(
                f"a pytorch model's estimator must be a torch.nn.Module; got "
                f"{type(self.estimator).__name__}. Wrap your network in a torch.nn.Module."
            )
        if type(self.estimator).__name__ in ("RecursiveScriptModule", "ScriptModule"):
            from pocketml.train._script import scripted_with_softmax

            return scripted_with_softmax(self.estimator.eval())
        return with_softmax(self.estimator.eval())

    def num_parameters(self) -> int | None:
        """Parameter count of a PyTorch model (None for scikit-learn)."""
        if self.framework != "pytorch":
            return None
        return int(sum(p.numel() for p in self.estimator.parameters()))

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        """Write ``model.json``, ``schema.json`` and the weights into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta: dict[str, Any] = {
            "framework": self.framework,
            "architecture": self.architecture,
            "params": self.params,
        }
        (directory / "schema.json").write_text(self.schema.to_json())
        if self.framework == "pytorch":
            import torch

            if self.architecture in TORCH_ARCHITECTURES:
                torch.save(self.estimator.state_dict(), directory / "model.pt")
            elif isinstance(self.estimator, torch.jit.ScriptModule):
                meta["torchscript"] = True  # no pickle: loads without the user's classes
                torch.jit.save(self.estimator, str(directory / "model.pt"))
            else:  # a user's own module: keep the whole object (its class must be importable)
                torch.save(self.estimator, directory / "model.pt")
        elif self.framework == "onnx":
            (directory / "model.onnx").write_bytes(bytes(self.estimator))
        else:
            with open(directory / "model.pkl", "wb") as fh:
                pickle.dump(self.estimator, fh)
        (directory / _MODEL_JSON).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path | str) -> TrainedModel:
        """Load a model saved by ``save`` (or written by ``pocketml train``).

        Only load directories you trust: weights of custom modules and scikit-learn
        estimators are pickles.

        Raises:
            NotFound: ``directory`` has no ``model.json``.
            InvalidInput: the files are inconsistent.
        """
        directory = Path(directory)
        meta_path = directory / _MODEL_JSON
        if not meta_path.is_file():
            raise NotFound(
                f"{directory} is not a trained model directory (no {_MODEL_JSON}); "
                "create one with `pocketml train --out DIR`"
            )
        meta = json.loads(meta_path.read_text())
        schema = ModelSchema.from_json((directory / "schema.json").read_text())
        framework, architecture = meta["framework"], meta["architecture"]
        if framework == "pytorch":
            import torch

            if architecture in TORCH_ARCHITECTURES:
                module = build_torch_model(
                    architecture, schema.input.sample_shape, len(schema.labels)
                )
                module.load_state_dict(torch.load(directory / "model.pt", weights_only=True))
            elif meta.get("torchscript"):
                module = torch.jit.load(str(directory / "model.pt"))
            else:
                module = torch.load(directory / "model.pt", weights_only=False)
            estimator = module.eval()
        elif framework == "onnx":
            estimator = (directory / "model.onnx").read_bytes()
        elif framework == "sklearn":
            with open(directory / "model.pkl", "rb") as fh:
                estimator = pickle.load(fh)  # documented: load trusted directories only
        else:
            raise InvalidInput(f"{meta_path}: unknown framework {framework!r}")
        return cls(framework, architecture, estimator, schema, meta.get("params", {}))
