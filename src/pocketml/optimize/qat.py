"""Quantization-aware training (QAT) of PyTorch models, exported as int8 ONNX QDQ files.

The route (PyTorch eager-mode QAT, ``torch.ao.quantization``, works in torch 2.13):

1. fuse Conv2d-BatchNorm2d(-ReLU) and Linear-ReLU so training simulates the folded layers
   a device runs (``fuse_modules_qat``);
2. insert fake quantization (``prepare_qat``): activations uint8 per tensor, weights int8
   symmetric per output channel (what ONNX Runtime's int8 kernels want); the observers
   update only in training mode, so validation batches never move the scales;
3. fine-tune with the usual training loop (:func:`pocketml.train.trainer.fine_tune`);
4. ``convert`` to a quantized module and export it with the TorchScript ONNX exporter,
   which writes QuantizeLinear/DequantizeLinear pairs (a QDQ model); ONNX Runtime fuses
   them into QLinearConv / QGemm int8 kernels at load time.

``QATrainer.apply`` also builds the post-training alternative from the same float model
(ONNX Runtime ``quantize_static``, per-channel QDQ after ``quant_pre_process``, through
:class:`~pocketml.optimize.quantize.OnnxStaticQuantizer`) and measures the float model,
both int8 files and the int8 operators ONNX Runtime really executes, on the same data.
QAT needs an ``nn.Sequential`` of Conv2d, BatchNorm2d, ReLU, pooling, Flatten, Dropout
and Linear layers (the built-in ``mlp``, ``cnn-small`` and ``cnn-large``).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml._native import quiet_native
from pocketml.data import Augmentation, Dataset, Splits
from pocketml.errors import ConversionError, InvalidInput, MissingDependencyError, UnsupportedError
from pocketml.train.metrics import classification_metrics
from pocketml.train.model import TrainedModel
from pocketml.train.trainer import TrainConfig, evaluate, fine_tune, model_inputs

__all__ = ["QATResult", "QATrainer", "qdq_operators", "runtime_operators"]

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_SUPPORTED = (
    "Conv2d",
    "BatchNorm2d",
    "ReLU",
    "Linear",
    "Flatten",
    "Dropout",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "for quantization-aware training") from exc
    return torch


def qdq_operators(path: Path | str) -> dict[str, int]:
    """How many QuantizeLinear and DequantizeLinear nodes an ONNX file holds.

    Args:
        path: an ONNX file.

    Returns:
        ``{"QuantizeLinear": n, "DequantizeLinear": m}``.
    """
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return {op: sum(1 for node in nodes if node.op_type == op) for op in _QDQ}


def runtime_operators(path: Path | str) -> list[str]:
    """The operators ONNX Runtime executes for ``path`` after its graph optimizations.

    A QDQ file runs in int8 when this lists QLinearConv, QGemm or QLinearMatMul.

    Args:
        path: an ONNX file.

    Returns:
        Sorted operator types of the optimized graph.
    """
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="pocketml-qat-") as work:
        optimized = Path(work) / "optimized.onnx"
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(optimized)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        nodes = onnx.load(str(optimized)).graph.node
        return sorted({node.op_type for node in nodes})


@dataclass(frozen=True)
class QATResult:
    """A quantization-aware trained int8 model and its comparison with post-training int8.

    Attributes:
        path: the int8 QDQ ONNX file made by QAT (outputs probabilities).
        model: the fake-quantized PyTorch model after fine-tuning (for inspection; the
            ONNX file is what ships).
        metrics: the QAT ONNX file's metrics, run in ONNX Runtime.
        float_metrics: the float input model's metrics on the same data.
        ptq_path: the post-training static int8 file of the float model, or None.
        ptq_metrics: its metrics in ONNX Runtime, or None.
        size_bytes: size of ``path``.
        float_size_bytes: size of the float ONNX export.
        ptq_size_bytes: size of ``ptq_path``, or None.
        qdq_nodes: QuantizeLinear / DequantizeLinear counts of ``path``.
        int8_operators: ONNX Runtime's int8 operators for ``path`` (QLinearConv, ...).
        agreement_with_torch: share of samples where the ONNX file in ONNX Runtime and the
            converted int8 torch module predict the same class (export parity).
        test_set: name of the dataset the metrics were measured on.
    """

    path: Path
    model: TrainedModel
    metrics: dict[str, Any]
    float_metrics: dict[str, Any]
    ptq_path: Path | None
    ptq_metrics: dict[str, Any] | None
    size_bytes: int
    float_size_bytes: int
    ptq_size_bytes: int | None
    qdq_nodes: dict[str, int]
    int8_operators: list[str]
    agreement_with_torch: float
    test_set: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (accuracies rather than full metric dicts)."""
        return {
            "path": str(self.path),
            "test_set": self.test_set,
            "float_accuracy": self.float_metrics["accuracy"],
            "qat_accuracy": self.metrics["accuracy"],
            "ptq_accuracy": self.ptq_metrics["accuracy"] if self.ptq_metrics else None,
            "float_size_bytes": self.float_size_bytes,
            "qat_size_bytes": self.size_bytes,
            "ptq_size_bytes": self.ptq_size_bytes,
            "qdq_nodes": self.qdq_nodes,
            "int8_operators": self.int8_operators,
            "agreement_with_torch": self.agreement_with_torch,
        }


class QATrainer:
    """Quantization-aware fine-tuning of a trained PyTorch model, then int8 ONNX export.

    Args:
        epochs: QAT fine-tuning epochs (>= 1).
        learning_rate: fine-tuning learning rate (lower than for training from scratch).
        seed: fine-tuning seed.
        augmentations: augmentations applied while fine-tuning.
        compare_ptq: also build and measure ONNX Runtime's static post-training int8.
        calibration_samples: training samples used to calibrate the post-training int8.
        opset: ONNX opset of the exported files (>= 13 for per-channel QDQ).

    Raises:
        InvalidInput: parameters out of range.
    """

    def __init__(
        self,
        *,
        epochs: int = 3,
        learning_rate: float = 1e-4,
        seed: int = 0,
        augmentations: tuple[Augmentation, ...] = (),
        compare_ptq: bool = True,
        calibration_samples: int = 256,
        opset: int = 17,
    ) -> None:
        if not isinstance(epochs, int) or epochs < 1:
            raise InvalidInput(f"epochs must be an int >= 1; got {epochs!r}. Try 3.")
        if not learning_rate > 0:
            raise InvalidInput(f"learning_rate must be > 0; got {learning_rate}. Try 1e-4.")
        if calibration_samples < 1:
            raise InvalidInput(f"calibration_samples must be >= 1; got {calibration_samples}.")
        if not 13 <= opset <= 21:
            raise InvalidInput(f"opset must be in [13, 21] for per-channel QDQ; got {opset}.")
        self.config = TrainConfig(
            seed=seed,
            epochs=epochs,
            learning_rate=learning_rate,
            patience=epochs,
            augmentations=tuple(augmentations),
        )
        self.compare_ptq = compare_ptq
        self.calibration_samples = calibration_samples
        self.opset = opset

    def apply(
        self,
        model: TrainedModel,
        splits: Splits,
        out_dir: Path | str,
        *,
        test: Dataset | None = None,
    ) -> QATResult:
        """Fine-tune a fake-quantized copy of ``model``, export it as int8 QDQ ONNX.

        Args:
            model: a trained float PyTorch model (left untouched).
            splits: fine-tuning data (train/validation) and the test split.
            out_dir: directory for ``model-qat-int8.onnx`` (and, when comparing,
                ``model-fp32.onnx`` and ``model-ptq-int8.onnx``).
            test: the dataset metrics are measured on (default ``splits.test``).

        Returns:
            A QATResult.

        Raises:
            InvalidInput: not a PyTorch model.
            UnsupportedError: a module layout QAT does not handle.
            ConversionError: the export failed or holds no QDQ nodes.
        """
        from pocketml.convert.onnx import to_onnx

        if model.framework != "pytorch":
            raise InvalidInput(
                f"QAT needs a PyTorch model; got a {model.framework} {model.architecture}. "
                "Use OnnxStaticQuantizer for other models."
            )
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        test = test if test is not None else splits.test
        wrapper = _prepare(model.estimator, model.architecture)
        params = {**model.params, "qat": self.config.to_dict()}
        qat_model = TrainedModel("pytorch", "custom", wrapper, model.schema, params)
        fine_tune(qat_model, splits, self.config)
        wrapper.eval()
        from torch.ao.quantization import convert

        quantized = convert(copy.deepcopy(wrapper).eval())
        path = self._export(quantized, model, out / "model-qat-int8.onnx")
        x_test = model_inputs(model, test)
        probabilities = _run_onnx(path, x_test)
        with _torch().no_grad():
            torch_logits = quantized(_torch().from_numpy(x_test)).numpy()
        float_path = to_onnx(model, out / "model-fp32.onnx", opset=self.opset)
        ptq_path, ptq_metrics = None, None
        if self.compare_ptq:
            ptq_path = self._post_training(model, splits, float_path, out / "model-ptq-int8.onnx")
            ptq_metrics = _onnx_metrics(ptq_path, x_test, test)
        return QATResult(
            path=path,
            model=qat_model,
            metrics=_metrics(probabilities, test),
            float_metrics=evaluate(model, test),
            ptq_path=ptq_path,
            ptq_metrics=ptq_metrics,
            size_bytes=path.stat().st_size,
            float_size_bytes=float_path.stat().st_size,
            ptq_size_bytes=ptq_path.stat().st_size if ptq_path else None,
            qdq_nodes=qdq_operators(path),
            int8_operators=[op for op in runtime_operators(path) if _is_int8_kernel(op)],
            agreement_with_torch=float(
                np.mean(probabilities.argmax(axis=1) == torch_logits.argmax(axis=1))
            ),
            test_set=test.name,
        )

    def _export(self, quantized: Any, model: TrainedModel, path: Path) -> Path:
        torch = _torch()
        from pocketml.train.architectures import with_softmax

        sample = torch.zeros((1, *model.sample_shape), dtype=torch.float32)
        try:
            # the tracer warns that quantized scales become constants: that is the intent
            with quiet_native(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    with_softmax(quantized),
                    (sample,),
                    str(path),
                    input_names=["input"],
                    output_names=["probabilities"],
                    dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                    opset_version=self.opset,
                    dynamo=False,
                )
        except Exception as exc:  # torch raises many types from the exporter
            raise ConversionError(
                f"int8 ONNX export of the QAT {model.architecture} failed: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        counts = qdq_operators(path)
        if not all(counts.values()):
            raise ConversionError(
                f"the QAT export of {model.architecture} holds no QDQ pairs ({counts}); "
                "expected QuantizeLinear/DequantizeLinear nodes. Report this with your "
                "torch version."
            )
        return path

    def _post_training(self, model: TrainedModel, splits: Splits, src: Path, dst: Path) -> Path:
        from pocketml.optimize.quantize import OnnxStaticQuantizer

        x_train = model_inputs(model, splits.train)
        rng = np.random.default_rng(self.config.seed)
        count = min(self.calibration_samples, len(x_train))
        calibration = x_train[np.sort(rng.choice(len(x_train), count, replace=False))]
        quantizer = OnnxStaticQuantizer(calibration_data=calibration, per_channel=True)
        return quantizer.apply(src, dst).path


def _is_int8_kernel(op: str) -> bool:
    return op.startswith("QLinear") or op in ("QGemm", "ConvInteger", "MatMulInteger")


def _run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    from pocketml.runtime import open_runner

    return open_runner(path, "onnx").run(x)


def _metrics(probabilities: np.ndarray, dataset: Dataset) -> dict[str, Any]:
    return classification_metrics(dataset.labels, probabilities.argmax(axis=1), dataset.class_names)


def _onnx_metrics(path: Path, x: np.ndarray, dataset: Dataset) -> dict[str, Any]:
    return _metrics(_run_onnx(path, x), dataset)


def _fusion_groups(module: Any) -> list[list[str]]:
    """Index groups of Conv-BN(-ReLU), Conv-ReLU and Linear-ReLU runs in a Sequential."""
    names = [type(layer).__name__ for layer in module]
    patterns = (
        ("Conv2d", "BatchNorm2d", "ReLU"),
        ("Conv2d", "BatchNorm2d"),
        ("Conv2d", "ReLU"),
        ("Linear", "ReLU"),
    )
    groups, i = [], 0
    while i < len(names):
        for pattern in patterns:
            if tuple(names[i : i + len(pattern)]) == pattern:
                groups.append([str(j) for j in range(i, i + len(pattern))])
                i += len(pattern)
                break
        else:
            i += 1
    return groups


def _prepare(source: Any, architecture: str) -> Any:
    """A fused, fake-quantized copy of ``source`` in training mode."""
    torch = _torch()
    from torch.ao import quantization as tq

    if not isinstance(source, torch.nn.Sequential):
        raise UnsupportedError(
            f"QAT needs an nn.Sequential model; {architecture} is a {type(source).__name__}. "
            "Use OnnxStaticQuantizer (post-training int8) instead."
        )
    for index, layer in enumerate(source):
        if type(layer).__name__ not in _SUPPORTED:
            raise UnsupportedError(
                f"QAT does not handle {type(layer).__name__} (index {index}); supported "
                f"layers: {', '.join(_SUPPORTED)}. Use OnnxStaticQuantizer instead."
            )
    inner = copy.deepcopy(source).train()
    tq.fuse_modules_qat(inner, _fusion_groups(inner), inplace=True)
    wrapper = _QuantWrapper.build(inner)
    wrapper.qconfig = tq.QConfig(
        activation=tq.default_fused_act_fake_quant,  # uint8 [0, 255], per tensor
        weight=tq.default_fused_per_channel_wt_fake_quant,  # int8 symmetric per channel
    )
    tq.prepare_qat(wrapper, inplace=True)
    return wrapper


class _QuantWrapper:
    """Builds the QuantStub -> model -> DeQuantStub module (torch is imported lazily)."""

    _cls: Any = None

    @classmethod
    def build(cls, inner: Any) -> Any:
        if cls._cls is None:
            cls._cls = _define_wrapper()
        return cls._cls(inner)


def _define_wrapper() -> Any:
    torch = _torch()
    from torch.ao import quantization as tq

    class QuantWrapper(torch.nn.Module):  # type: ignore[name-defined]
        """Float in, float out; observers learn only while training."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.quant = tq.QuantStub()
            self.inner = inner
            self.dequant = tq.DeQuantStub()

        def forward(self, x: Any) -> Any:
            return self.dequant(self.inner(self.quant(x)))

        def train(self, mode: bool = True) -> Any:
            super().train(mode)
            self.apply(tq.enable_observer if mode else tq.disable_observer)
            return self

    return QuantWrapper
