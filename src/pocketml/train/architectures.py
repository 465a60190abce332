"""Reference PyTorch architectures: ``mlp``, ``cnn-small`` (for devices), ``cnn-large`` (cloud).

Built with plain layers every mobile converter supports (Conv2d, BatchNorm, ReLU, pooling,
Linear), so the same module converts to ONNX, TFLite and Core ML. Modules return logits;
``with_softmax`` wraps one so exported files output probabilities.
"""

from __future__ import annotations

from typing import Any

from pocketml.errors import InvalidInput, MissingDependencyError

__all__ = ["SKLEARN_ARCHITECTURES", "TORCH_ARCHITECTURES", "build_torch_model", "with_softmax"]

TORCH_ARCHITECTURES = ("mlp", "cnn-small", "cnn-large")
SKLEARN_ARCHITECTURES = ("logistic-regression", "random-forest", "sklearn-mlp")


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "build", "to train PyTorch models") from exc
    return torch


def build_torch_model(architecture: str, sample_shape: tuple[int, ...], num_classes: int) -> Any:
    """A fresh ``torch.nn.Module`` of ``architecture`` for inputs of ``sample_shape``.

    Raises:
        InvalidInput: unknown architecture, or a CNN asked for non-image inputs.
    """
    nn = _torch().nn
    if architecture not in TORCH_ARCHITECTURES:
        raise InvalidInput(
            f"unknown PyTorch architecture {architecture!r}; choose from "
            f"{', '.join(TORCH_ARCHITECTURES)} (or {', '.join(SKLEARN_ARCHITECTURES)})"
        )
    features = 1
    for dim in sample_shape:
        features *= dim
    if architecture == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, 128),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )
    if len(sample_shape) != 3:
        raise InvalidInput(
            f"{architecture} needs image inputs (C, H, W); got samples of shape {sample_shape}. "
            "Use 'mlp' or a scikit-learn model for tables."
        )
    channels = sample_shape[0]

    def block(c_in: int, c_out: int) -> list[Any]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    if architecture == "cnn-small":
        layers = [
            *block(channels, 16),
            nn.MaxPool2d(2),
            *block(16, 32),
            *block(32, 32),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, num_classes),
        ]
    else:  # cnn-large
        layers = [
            *block(channels, 64),
            *block(64, 64),
            nn.MaxPool2d(2),
            *block(64, 128),
            *block(128, 128),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128, 256),
            nn.ReLU(),
            nn.Linear(256, num_classes),
        ]
    return nn.Sequential(*layers)


def with_softmax(module: Any) -> Any:
    """Wrap a logits module so it outputs class probabilities (for export)."""
    nn = _torch().nn

    class WithSoftmax(nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return _torch().softmax(self.inner(x), dim=-1)

    return WithSoftmax(module).eval()
