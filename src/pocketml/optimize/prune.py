"""Pruning of PyTorch models: unstructured magnitude pruning and structured channel pruning.

- :class:`MagnitudePruner` zeroes the globally smallest weights of every Conv2d and Linear
  layer (``torch.nn.utils.prune.global_unstructured`` with L1 magnitude), fine-tunes with
  the masks in place, then makes the zeros permanent. The tensors keep their shapes: the
  file is as large as before and runs as fast; only its compressed size (what an app
  download costs) shrinks.
- :class:`ChannelPruner` physically removes the Conv2d filters with the smallest L1 norm
  and fixes what follows (BatchNorm2d, the next Conv2d's inputs, the first Linear's
  input columns), then fine-tunes. The model gets smaller and faster.

Both keep the input model untouched and return a :class:`PruneResult` whose ``model`` is
a new TrainedModel with the same schema. :func:`export_size` measures the ONNX file and
its zip. Channel pruning understands ``nn.Sequential`` stacks of the plain layers the
built-in CNNs use; anything else is refused with :class:`~pocketml.errors.UnsupportedError`.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketml.data import Augmentation, Dataset, Splits
from pocketml.errors import InvalidInput, MissingDependencyError, UnsupportedError
from pocketml.train.model import TrainedModel
from pocketml.train.trainer import TrainConfig, evaluate, fine_tune

__all__ = ["ChannelPruner", "MagnitudePruner", "PruneResult", "export_size", "weight_sparsity"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "to prune PyTorch models") from exc
    return torch


def _check_pytorch(model: TrainedModel, what: str) -> None:
    if model.framework != "pytorch":
        raise InvalidInput(
            f"{what} needs a PyTorch model; got a {model.framework} {model.architecture}. "
            "Train a PyTorch architecture (mlp, cnn-small, cnn-large) first."
        )


def _prunable(module: Any) -> list[Any]:
    nn = _torch().nn
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def weight_sparsity(module: Any) -> float:
    """Fraction of exactly-zero weights over every Conv2d and Linear weight of ``module``.

    Args:
        module: a ``torch.nn.Module``.

    Returns:
        Zeros / total in [0, 1] (biases and BatchNorm parameters are not counted).
    """
    layers = _prunable(module)
    total = sum(int(m.weight.numel()) for m in layers)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / total if total else 0.0


def export_size(model: TrainedModel, path: Path | str | None = None) -> dict[str, int]:
    """Export ``model`` to ONNX and measure the file and its deflate zip.

    Args:
        model: a TrainedModel.
        path: where to write the ONNX file; default a temporary file, deleted afterwards.

    Returns:
        ``{"size_bytes": ..., "zip_size_bytes": ...}``.

    Raises:
        ConversionError: the export failed.
    """
    from pocketml.bench import zip_size
    from pocketml.convert.onnx import to_onnx

    if path is not None:
        written = to_onnx(model, path)
        return {"size_bytes": written.stat().st_size, "zip_size_bytes": zip_size(written)}
    with tempfile.TemporaryDirectory(prefix="pocketml-prune-") as work:
        return export_size(model, Path(work) / "model.onnx")


@dataclass(frozen=True)
class PruneResult:
    """A pruned model and what pruning did to it.

    Attributes:
        model: the pruned (and fine-tuned) model; same schema as the input model.
        method: "magnitude" or "channel".
        target: the asked sparsity (magnitude) or filter ratio (channel).
        sparsity: measured fraction of zero Conv2d/Linear weights.
        parameters_before: parameter count of the input model.
        parameters_after: parameter count of the pruned model.
        nonzero_parameters: parameters of the pruned model that are not zero.
        metrics_before: the input model's test metrics.
        metrics_pruned: test metrics right after pruning, before fine-tuning.
        metrics: test metrics after fine-tuning.
    """

    model: TrainedModel
    method: str
    target: float
    sparsity: float
    parameters_before: int
    parameters_after: int
    nonzero_parameters: int
    metrics_before: dict[str, Any]
    metrics_pruned: dict[str, Any]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (accuracies rather than full metric dicts)."""
        return {
            "method": self.method,
            "target": self.target,
            "sparsity": round(self.sparsity, 4),
            "parameters_before": self.parameters_before,
            "parameters_after": self.parameters_after,
            "nonzero_parameters": self.nonzero_parameters,
            "accuracy_before": self.metrics_before["accuracy"],
            "accuracy_pruned": self.metrics_pruned["accuracy"],
            "accuracy": self.metrics["accuracy"],
        }


@dataclass(frozen=True)
class _FineTune:
    epochs: int
    learning_rate: float
    seed: int
    augmentations: tuple[Augmentation, ...]

    def run(self, model: TrainedModel, splits: Splits) -> None:
        if self.epochs == 0:
            return
        config = TrainConfig(
            seed=self.seed,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            patience=self.epochs,
            augmentations=self.augmentations,
        )
        fine_tune(model, splits, config)


def _check_fine_tune(epochs: int, learning_rate: float) -> None:
    if not isinstance(epochs, int) or epochs < 0:
        raise InvalidInput(f"fine_tune_epochs must be an int >= 0; got {epochs!r}. Try 3.")
    if not learning_rate > 0:
        raise InvalidInput(f"learning_rate must be > 0; got {learning_rate}. Try 5e-4.")


def _result(
    method: str,
    target: float,
    original: TrainedModel,
    pruned: TrainedModel,
    metrics_pruned: dict[str, Any],
    test: Dataset,
) -> PruneResult:
    parameters = list(pruned.estimator.parameters())
    return PruneResult(
        model=pruned,
        method=method,
        target=target,
        sparsity=weight_sparsity(pruned.estimator),
        parameters_before=int(original.num_parameters() or 0),
        parameters_after=int(sum(p.numel() for p in parameters)),
        nonzero_parameters=int(sum(int((p != 0).sum()) for p in parameters)),
        metrics_before=evaluate(original, test),
        metrics_pruned=metrics_pruned,
        metrics=evaluate(pruned, test),
    )


class MagnitudePruner:
    """Global unstructured L1-magnitude pruning with fine-tuning under the masks.

    Args:
        sparsity: fraction of Conv2d/Linear weights to zero, in [0, 1).
        fine_tune_epochs: epochs of fine-tuning with the masks applied (0: none).
        learning_rate: fine-tuning learning rate.
        seed: fine-tuning seed.
        augmentations: augmentations applied while fine-tuning.

    Raises:
        InvalidInput: parameters out of range.
    """

    def __init__(
        self,
        sparsity: float = 0.5,
        *,
        fine_tune_epochs: int = 3,
        learning_rate: float = 5e-4,
        seed: int = 0,
        augmentations: tuple[Augmentation, ...] = (),
    ) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise InvalidInput(f"sparsity must be in [0, 1); got {sparsity}. Try 0.5.")
        _check_fine_tune(fine_tune_epochs, learning_rate)
        self.sparsity = float(sparsity)
        self.fine_tune = _FineTune(fine_tune_epochs, learning_rate, seed, tuple(augmentations))

    def apply(
        self, model: TrainedModel, splits: Splits, *, test: Dataset | None = None
    ) -> PruneResult:
        """Prune a copy of ``model``, fine-tune it, and make the zeros permanent.

        Args:
            model: a trained PyTorch model (left untouched).
            splits: data for fine-tuning (train/validation) and testing.
            test: the dataset metrics are measured on (default ``splits.test``).

        Returns:
            A PruneResult; ``sparsity`` equals the asked sparsity up to one weight.

        Raises:
            InvalidInput: not a PyTorch model, or it has no Conv2d/Linear layer.
        """
        _check_pytorch(model, "magnitude pruning")
        _torch()
        from torch.nn.utils import prune

        module = copy.deepcopy(model.estimator)
        layers = _prunable(module)
        if not layers:
            raise InvalidInput(
                f"{model.architecture} has no Conv2d or Linear layer to prune; "
                "magnitude pruning applies to those layers' weights."
            )
        targets = [(layer, "weight") for layer in layers]
        prune.global_unstructured(
            targets, pruning_method=prune.L1Unstructured, amount=self.sparsity
        )
        params = {**model.params, "pruning": {"method": "magnitude", "sparsity": self.sparsity}}
        pruned = TrainedModel(model.framework, model.architecture, module, model.schema, params)
        test = test if test is not None else splits.test
        metrics_pruned = evaluate(pruned, test)
        self.fine_tune.run(pruned, splits)
        for layer, name in targets:
            prune.remove(layer, name)
        module.eval()
        return _result("magnitude", self.sparsity, model, pruned, metrics_pruned, test)


class ChannelPruner:
    """Structured pruning: remove the lowest-L1 filters of every Conv2d, then fine-tune.

    Args:
        ratio: fraction of each Conv2d's filters to remove, in [0, 1); at least one
            filter per layer is kept.
        fine_tune_epochs: epochs of fine-tuning after the surgery (0: none).
        learning_rate: fine-tuning learning rate.
        seed: fine-tuning seed.
        augmentations: augmentations applied while fine-tuning.

    Raises:
        InvalidInput: parameters out of range.
    """

    def __init__(
        self,
        ratio: float = 0.5,
        *,
        fine_tune_epochs: int = 3,
        learning_rate: float = 1e-3,
        seed: int = 0,
        augmentations: tuple[Augmentation, ...] = (),
    ) -> None:
        if not 0.0 <= ratio < 1.0:
            raise InvalidInput(f"ratio must be in [0, 1); got {ratio}. Try 0.5.")
        _check_fine_tune(fine_tune_epochs, learning_rate)
        self.ratio = float(ratio)
        self.fine_tune = _FineTune(fine_tune_epochs, learning_rate, seed, tuple(augmentations))

    def apply(
        self, model: TrainedModel, splits: Splits, *, test: Dataset | None = None
    ) -> PruneResult:
        """Build a narrower copy of ``model`` and fine-tune it.

        Args:
            model: a trained PyTorch model whose module is an ``nn.Sequential`` of
                Conv2d, BatchNorm2d, ReLU, pooling, Flatten, Dropout and Linear layers.
            splits: data for fine-tuning (train/validation) and testing.
            test: the dataset metrics are measured on (default ``splits.test``).

        Returns:
            A PruneResult whose model has fewer parameters (architecture "custom",
            ``params["pruned_from"]`` names the original architecture).

        Raises:
            InvalidInput: not a PyTorch model.
            UnsupportedError: a module layout channel pruning does not understand.
        """
        _check_pytorch(model, "channel pruning")
        module = _shrink_sequential(model.estimator, self.ratio, model.architecture)
        params = {
            **model.params,
            "pruned_from": model.architecture,
            "pruning": {"method": "channel", "ratio": self.ratio},
        }
        pruned = TrainedModel(model.framework, "custom", module, model.schema, params)
        test = test if test is not None else splits.test
        metrics_pruned = evaluate(pruned, test)
        self.fine_tune.run(pruned, splits)
        module.eval()
        return _result("channel", self.ratio, model, pruned, metrics_pruned, test)


_PASS_THROUGH = ("ReLU", "ReLU6", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Dropout")


def _shrink_sequential(source: Any, ratio: float, architecture: str) -> Any:
    """A narrower copy of a Sequential CNN: each Conv2d keeps its highest-L1 filters."""
    torch = _torch()
    nn = torch.nn
    if not isinstance(source, nn.Sequential):
        raise UnsupportedError(
            f"channel pruning needs an nn.Sequential model; {architecture} is a "
            f"{type(source).__name__}. Use MagnitudePruner, or prune your model by hand."
        )
    layers: list[Any] = []
    # (indices of the surviving channels, channel count before pruning) of the tensor
    # flowing into the next layer; None once no pruned conv feeds it
    kept: tuple[Any, int] | None = None
    with torch.no_grad():
        for index, layer in enumerate(source):
            if isinstance(layer, nn.Conv2d):
                if layer.groups != 1:
                    raise UnsupportedError(
                        f"channel pruning cannot shrink grouped/depthwise Conv2d at index "
                        f"{index} (groups={layer.groups}); use MagnitudePruner instead."
                    )
                layer, kept = _shrink_conv(layer, kept, ratio)
            elif isinstance(layer, nn.BatchNorm2d):
                layer = _shrink_batchnorm(layer, kept)
            elif isinstance(layer, nn.Linear):
                layer, kept = _shrink_linear_inputs(layer, kept), None
            elif isinstance(layer, nn.Flatten) or type(layer).__name__ in _PASS_THROUGH:
                layer = copy.deepcopy(layer)
            else:
                raise UnsupportedError(
                    f"channel pruning does not know how {type(layer).__name__} (index "
                    f"{index}) changes channels; supported: Conv2d, BatchNorm2d, Linear, "
                    f"Flatten, {', '.join(_PASS_THROUGH)}. Use MagnitudePruner instead."
                )
            layers.append(layer)
    return nn.Sequential(*layers).eval()


def _shrink_conv(
    conv: Any, kept_in: tuple[Any, int] | None, ratio: float
) -> tuple[Any, tuple[Any, int]]:
    torch = _torch()
    weight = conv.weight if kept_in is None else conv.weight[:, kept_in[0]]
    n_out = conv.out_channels
    n_keep = max(1, n_out - int(n_out * ratio))
    norms = conv.weight.abs().sum(dim=(1, 2, 3))
    kept_out = torch.sort(torch.topk(norms, n_keep).indices).values
    new = torch.nn.Conv2d(
        weight.shape[1],
        n_keep,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    new.weight.copy_(weight[kept_out])
    if conv.bias is not None:
        new.bias.copy_(conv.bias[kept_out])
    return new, (kept_out, n_out)


def _shrink_batchnorm(bn: Any, kept_in: tuple[Any, int] | None) -> Any:
    new = copy.deepcopy(bn)
    if kept_in is None:
        return new
    kept = kept_in[0]
    new.num_features = len(kept)
    for name in ("weight", "bias"):
        tensor = getattr(bn, name)
        if tensor is not None:
            setattr(new, name, _torch().nn.Parameter(tensor[kept].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(bn, name) is not None:
            setattr(new, name, getattr(bn, name)[kept].clone())
    return new


def _shrink_linear_inputs(linear: Any, kept_in: tuple[Any, int] | None) -> Any:
    torch = _torch()
    new = copy.deepcopy(linear)
    if kept_in is None:
        return new
    kept, channels = kept_in
    # After pooling + Flatten each channel contributes `block` consecutive features.
    block, remainder = divmod(linear.in_features, channels)
    if remainder:
        raise UnsupportedError(
            f"a Linear layer takes {linear.in_features} features, which is not a multiple "
            f"of the {channels} channels before it; channel pruning cannot map its inputs."
        )
    columns = (kept[:, None] * block + torch.arange(block)[None, :]).reshape(-1)
    new.in_features = int(columns.numel())
    new.weight = torch.nn.Parameter(linear.weight[:, columns].clone())
    return new
