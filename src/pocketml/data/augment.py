"""Augmentation per modality: what a phone's camera or motion sensor does to its inputs.

Images (NCHW, in their raw value range) come darker, blurrier, noisier and tilted:
``dim``, ``blur``, ``noise`` and ``rotate`` take a strength in [0, 1] (0 = unchanged).
Sensor windows (NCL) start at another moment and carry sensor noise: ``shift`` moves each
window by up to that many time steps (the edge sample repeats into the gap; ``roll``
wraps around instead), ``jitter`` adds Gaussian noise whose std is that fraction of each
channel's std. A transform refuses a layout it does not fit, naming the ones it does.
Randomness comes from an explicit ``numpy.random.Generator`` so the same seed gives the
same augmented data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pocketml.data._dataset import Dataset
from pocketml.errors import InvalidInput

__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "augment_dataset",
    "check_augmentations",
    "parse_augmentations",
]

MAX_ROTATION_DEGREES = 30.0
MAX_SHIFT_STEPS = 100_000  # a bound before the window length is known (refused past L - 1)


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


def _time_shift(x: np.ndarray, steps: float, rng: np.random.Generator, *, wrap: bool) -> np.ndarray:
    limit = int(steps)
    length = x.shape[2]
    if limit >= length:
        raise InvalidInput(
            f"a time shift must be shorter than the window; got {limit} steps for windows of "
            f"{length} steps. Pass a shift of at most {length - 1}."
        )
    offsets = np.asarray(rng.integers(-limit, limit + 1, size=x.shape[0]), dtype=np.int64)
    source = np.arange(length)[None, :] - offsets[:, None]  # out[t] = x[t - offset]
    source = source % length if wrap else np.clip(source, 0, length - 1)
    return np.take_along_axis(x, source[:, None, :], axis=2).astype(np.float32)


def shift(
    x: np.ndarray, steps: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Move each (C, L) window by a random offset in ±steps; the edge sample fills the gap."""
    return _time_shift(x, steps, rng, wrap=False)


def roll(
    x: np.ndarray, steps: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Roll each (C, L) window circularly by a random offset in ±steps (periodic signals)."""
    return _time_shift(x, steps, rng, wrap=True)


def jitter(
    x: np.ndarray, strength: float, rng: np.random.Generator, vrange: tuple[float, float]
) -> np.ndarray:
    """Gaussian noise of std = strength × each channel's std (over samples and time)."""
    channel_std = x.std(axis=(0, 2), keepdims=True) if x.size else np.zeros((1, x.shape[1], 1))
    return (x + rng.normal(size=x.shape) * (strength * channel_std)).astype(np.float32)


_Transform = Callable[[np.ndarray, float, np.random.Generator, tuple[float, float]], np.ndarray]


@dataclass(frozen=True)
class _Spec:
    """A transform, the layout it fits, and the values its strength may take."""

    transform: _Transform
    layout: str
    high: float
    unit: str
    integer: bool = False


_IMAGE = "in [0, 1]"
_STEPS = f"a whole number of time steps in [0, {MAX_SHIFT_STEPS}]"
_SPECS = {
    "dim": _Spec(dim, "NCHW", 1.0, _IMAGE),
    "blur": _Spec(blur, "NCHW", 1.0, _IMAGE),
    "noise": _Spec(noise, "NCHW", 1.0, _IMAGE),
    "rotate": _Spec(rotate, "NCHW", 1.0, _IMAGE),
    "shift": _Spec(shift, "NCL", MAX_SHIFT_STEPS, _STEPS, True),
    "roll": _Spec(roll, "NCL", MAX_SHIFT_STEPS, _STEPS, True),
    "jitter": _Spec(jitter, "NCL", 1.0, "in [0, 1] (a fraction of each channel's std)"),
}
AUGMENTATIONS: dict[str, _Transform] = {name: spec.transform for name, spec in _SPECS.items()}
_LAYOUT_NAMES = {"NCHW": "NCHW images", "NCL": "NCL sensor windows", "NC": "NC tables"}


@dataclass(frozen=True)
class Augmentation:
    """One named transform with its strength: in [0, 1], or time steps for shift/roll."""

    name: str
    strength: float

    def __post_init__(self) -> None:
        spec = _SPECS.get(self.name)
        if spec is None:
            raise InvalidInput(
                f"unknown augmentation {self.name!r}; choose from {', '.join(_SPECS)}"
            )
        valid = 0.0 <= self.strength <= spec.high
        if not valid or (spec.integer and self.strength != int(self.strength)):
            raise InvalidInput(
                f"augmentation {self.name!r} strength must be {spec.unit}; got "
                f"{self.strength:g}. Example: 'shift=8,jitter=0.05' for sensor windows, "
                "'dim=0.5,noise=0.2' for images."
            )

    @property
    def layout(self) -> str:
        """The layout of the data this transform fits ("NCHW" or "NCL")."""
        return _SPECS[self.name].layout

    def apply(
        self, x: np.ndarray, rng: np.random.Generator, vrange: tuple[float, float]
    ) -> np.ndarray:
        """Transform a batch of the transform's layout (NCHW images or NCL windows)."""
        return _SPECS[self.name].transform(x, self.strength, rng, vrange)


def check_augmentations(augmentations: Sequence[Augmentation], layout: str) -> None:
    """Raise InvalidInput naming every augmentation that does not fit ``layout``."""
    misfits = [a.name for a in augmentations if a.layout != layout]
    if misfits:
        fitting = [name for name, spec in _SPECS.items() if spec.layout == layout]
        raise InvalidInput(
            f"augmentations {misfits} do not fit {_LAYOUT_NAMES.get(layout, layout)}: "
            + "; ".join(f"{n!r} is for {_LAYOUT_NAMES[_SPECS[n].layout]}" for n in misfits)
            + ". "
            + (
                f"For {layout} data use {', '.join(fitting)}."
                if fitting
                else f"There are no augmentations for {layout} data; drop them."
            )
        )


def parse_augmentations(text: str, *, layout: str | None = None) -> list[Augmentation]:
    """Parse ``"dim=0.5,noise=0.2"`` or ``"shift=8,jitter=0.05"`` into Augmentations.

    Args:
        text: comma-separated ``name=value`` (a bare name: 0.5; shift/roll need a value).
        layout: when given, refuse transforms that do not fit it (see check_augmentations).

    Raises:
        InvalidInput: an unknown name, a value out of range, or a misfit for ``layout``.
    """
    result = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        try:
            strength = float(value) if value else 0.5
        except ValueError as exc:
            raise InvalidInput(f"augmentation {item!r}: strength must be a number") from exc
        result.append(Augmentation(name.strip(), strength))
    if layout is not None:
        check_augmentations(result, layout)
    return result


def augment_dataset(
    dataset: Dataset, augmentations: Sequence[Augmentation], *, seed: int = 0
) -> Dataset:
    """Apply ``augmentations`` in order to every sample of ``dataset``.

    Raises:
        InvalidInput: an augmentation does not fit the dataset's layout (e.g. ``shift``
            on NCHW images, ``rotate`` on NCL windows, anything on an NC table).
    """
    check_augmentations(augmentations, dataset.layout)
    rng = np.random.default_rng(seed)
    vrange = _range(dataset.value_range, dataset.features)
    x = dataset.features
    for augmentation in augmentations:
        x = augmentation.apply(x, rng, vrange)
    label = "+".join(f"{a.name}{a.strength:g}" for a in augmentations)
    return dataset.with_features(x, name=f"{dataset.name}[{label}]")
