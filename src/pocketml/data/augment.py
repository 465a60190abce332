"""Augmentation for mobile conditions: phones see darker, blurrier, noisier, tilted inputs.

Each transform takes NCHW images in their raw value range and a ``strength`` in [0, 1]
(0 = unchanged). Randomness comes from an explicit ``numpy.random.Generator`` so the same
seed gives the same augmented data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pocketml.data._dataset import Dataset
from pocketml.errors import InvalidInput

__all__ = ["AUGMENTATIONS", "Augmentation", "augment_dataset", "parse_augmentations"]

MAX_ROTATION_DEGREES = 30.0


def _range(dataset_range: tuple[float, float] | None, x: np.ndarray) -> tuple[float, float]:
    if dataset_range is not None:
        return dataset_range
    return float(x.min()), float(x.max())


def dim(
    x: np.ndarray, strength: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Darken: scale intensities towards the low end by ``strength`` (0.6 = 40 % bright)."""
    low = vrange[0]
    return ((x - low) * (1.0 - strength) + low).astype(np.float32)


def blur(
    x: np.ndarray, strength: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Gaussian blur with sigma = 2 × strength pixels."""
    from scipy.ndimage import gaussian_filter

    sigma = 2.0 * strength
    if sigma == 0:
        return x
    return gaussian_filter(x, sigma=(0, 0, sigma, sigma)).astype(np.float32)


def noise(
    x: np.ndarray, strength: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Additive Gaussian noise, std = 0.25 × strength × the value range, clipped to it."""
    low, high = vrange
    noisy = x + rng.normal(0.0, 0.25 * strength * (high - low), size=x.shape)
    return np.clip(noisy, low, high).astype(np.float32)


def rotate(
    x: np.ndarray, strength: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Rotate each image by a random angle in ±(30° × strength)."""
    from scipy.ndimage import rotate as nd_rotate

    limit = MAX_ROTATION_DEGREES * strength
    out = np.empty_like(x)
    angles = np.asarray(rng.uniform(-limit, limit, size=x.shape[0]), dtype=np.float64)
    for i, angle in enumerate(angles):
        out[i] = nd_rotate(x[i], angle, axes=(1, 2), reshape=False, order=1, mode="nearest")
    return out.astype(np.float32)


AUGMENTATIONS = {"dim": dim, "blur": blur, "noise": noise, "rotate": rotate}


@dataclass(frozen=True)
class Augmentation:
    """One named transform with its strength in [0, 1]."""

    name: str
    strength: float

    def __post_init__(self) -> None:
        if self.name not in AUGMENTATIONS:
            raise InvalidInput(
                f"unknown augmentation {self.name!r}; choose from {', '.join(AUGMENTATIONS)}"
            )
        if not 0.0 <= self.strength <= 1.0:
            raise InvalidInput(
                f"augmentation {self.name!r} strength must be in [0, 1]; got {self.strength}"
            )

    def apply(
        self, x: np.ndarray, rng: np.random.Generator, vrange: tuple[float, float]
    ) -> np.ndarray:
        """Transform a batch of NCHW images."""
        return AUGMENTATIONS[self.name](x, self.strength, rng, vrange)


def parse_augmentations(text: str) -> list[Augmentation]:
    """Parse ``"dim=0.5,noise=0.2"`` into Augmentations."""
    result = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            strength = float(value) if value else 0.5
        except ValueError as exc:
            raise InvalidInput(f"augmentation {item!r}: strength must be a number") from exc
        result.append(Augmentation(name.strip(), strength))
    return result


def augment_dataset(
    dataset: Dataset, augmentations: Sequence[Augmentation], *, seed: int = 0
) -> Dataset:
    """Apply ``augmentations`` in order to every image of ``dataset``.

    Raises:
        InvalidInput: the dataset is not made of NCHW images.
    """
    if dataset.layout != "NCHW":
        raise InvalidInput(
            f"augmentations apply to NCHW images; {dataset.name} is {dataset.layout}"
        )
    rng = np.random.default_rng(seed)
    vrange = _range(dataset.value_range, dataset.features)
    x = dataset.features
    for augmentation in augmentations:
        x = augmentation.apply(x, rng, vrange)
    label = "+".join(f"{a.name}{a.strength:g}" for a in augmentations)
    return dataset.with_features(x, name=f"{dataset.name}[{label}]")
