"""The monitored features of a model input: what a device bins instead of raw values.

A table's columns are features already (``NC``: the i-th feature is column i). Raw pixels
and samples are too many and too weak one by one, so images and sensor windows are
summarised per channel by three numbers a phone computes in one pass:

- images (``NCHW`` / ``NHWC``): ``brightness_<c>`` (mean), ``contrast_<c>`` (standard
  deviation) and ``blur_<c>`` (variance of the 4-neighbour Laplacian over the interior
  pixels: a sharp image has large second differences, a blurred one small);
- sensor windows (``NCL``): ``mean_<c>``, ``std_<c>`` and ``roughness_<c>`` (variance of
  the first differences along time: the sensor analogue of blur).

The features are computed on the *raw* input (the schema's value range, before
normalization): that is what the device holds when it scores. This module is their one
home; the device SDK implements the same formulas and a test pins the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput
from pocketml.sketch._profile import ReferenceProfile, build_profile

if TYPE_CHECKING:  # only their attributes are used: no train/data import at run time
    from pocketml.data import Dataset
    from pocketml.train import TrainedModel

__all__ = [
    "IMAGE_STATS",
    "LAYOUT_RANK",
    "SENSOR_STATS",
    "build_input_profile",
    "image_features",
    "input_features",
    "profile_model",
    "sensor_features",
    "table_features",
]

IMAGE_STATS = ("brightness", "contrast", "blur")
# Rows of the reference split a profile is built from: quantile edges and counts are
# stable well before this, and the model's predictions on them stay a few seconds on CPU.
PROFILE_ROWS = 20_000
_BATCH = 1024
SENSOR_STATS = ("mean", "std", "roughness")
LAYOUT_RANK = {"NC": 2, "NCL": 3, "NCHW": 4, "NHWC": 4}
"""The rank of a batch of inputs per schema layout (batch first)."""

Features = dict[str, npt.NDArray[np.float64]]


def input_features(
    x: npt.ArrayLike, layout: str, *, names: Sequence[str] | None = None
) -> Features:
    """The monitored features of a batch of raw inputs, by the schema's layout.

    Args:
        x: raw inputs, shape ``(N, ...)`` of rank 2 (NC), 3 (NCL) or 4 (NCHW/NHWC).
        layout: the schema input's layout.
        names: column names of an ``NC`` table (default ``x0``, ``x1``, ...).

    Returns:
        feature name -> float64 array of N values, in a fixed order.

    Raises:
        InvalidInput: an unknown layout, or an array of another rank.
    """
    if layout not in LAYOUT_RANK:
        raise InvalidInput(f"layout must be one of {sorted(LAYOUT_RANK)}; got {layout!r}.")
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != LAYOUT_RANK[layout]:
        raise InvalidInput(
            f"inputs of layout {layout} must have rank {LAYOUT_RANK[layout]} (batch first); "
            f"got shape {array.shape}. Reshape them to the schema's input shape."
        )
    if layout == "NC":
        return table_features(array, names)
    if layout == "NCL":
        return sensor_features(array)
    return image_features(array if layout == "NCHW" else np.moveaxis(array, 3, 1))


def build_input_profile(
    x: npt.ArrayLike,
    layout: str,
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    names: Sequence[str] | None = None,
) -> ReferenceProfile:
    """The reference profile of a version from its reference split and its outputs on it.

    Args:
        x: the raw reference inputs, shape ``(N, ...)`` in the schema's layout.
        layout: the schema input's layout (which monitored features, see the module).
        probabilities: the model's class probabilities on ``x``, shape ``(N, classes)``.
        labels: the true classes, for the calibration table of the label-free estimate.
        names: column names of an ``NC`` table.

    Raises:
        InvalidInput: inputs, probabilities and labels of different lengths, or a bad layout.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    features = input_features(x, layout, names=names)
    n = len(next(iter(features.values()))) if features else 0
    if probs.ndim != 2 or probs.shape[0] != n or probs.shape[1] < 2:
        raise InvalidInput(
            f"probabilities must have shape ({n}, classes >= 2), one row per input; "
            f"got {probs.shape}."
        )
    predicted = probs.argmax(axis=1)
    correct = None
    if labels is not None:
        truth = np.asarray(labels).reshape(-1)
        if truth.size != n:
            raise InvalidInput(f"labels must hold one class per input ({n}); got {truth.size}.")
        correct = predicted == truth
    return build_profile(
        features,
        predicted_class=predicted,
        confidence=np.clip(probs.max(axis=1), 0.0, 1.0),
        correct=correct,
        num_classes=probs.shape[1],
    )


def profile_model(
    model: TrainedModel, split: Dataset, *, max_rows: int = PROFILE_ROWS, seed: int = 0
) -> ReferenceProfile:
    """The reference profile of a trained model on its training (or reference) split.

    At most ``max_rows`` rows are used (a seeded sample, in their original order). The
    features are computed on the raw rows in the model's input layout, the predictions on
    the same rows normalised as the schema says.

    Raises:
        InvalidInput: the split's samples do not fit the model's input shape.
    """
    total = len(split.features)
    shape = model.sample_shape
    if int(np.prod(split.features.shape[1:])) != int(np.prod(shape)):
        raise InvalidInput(
            f"{split.name} has samples of shape {split.features.shape[1:]}; the model takes "
            f"{shape}. Profile the model on the dataset it was trained on."
        )
    rows = np.arange(total)
    if total > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    raw = split.features[rows].reshape(len(rows), *shape)
    probabilities = np.concatenate(
        [
            model.predict_proba(model.schema.normalize(raw[start : start + _BATCH]))
            for start in range(0, len(raw), _BATCH)
        ]
    )
    spec = model.schema.input
    names = split.feature_names
    if spec.layout != "NC" or names is None or len(names) != spec.channels:
        names = None
    return build_input_profile(raw, spec.layout, probabilities, split.labels[rows], names=names)


def table_features(x: npt.NDArray[np.float64], names: Sequence[str] | None = None) -> Features:
    """The columns of an ``(N, F)`` table, named by ``names`` or ``x0 ... x{F-1}``."""
    columns = names if names is not None else [f"x{i}" for i in range(x.shape[1])]
    if len(columns) != x.shape[1]:
        raise InvalidInput(f"names must hold {x.shape[1]} column names; got {len(columns)}.")
    return {str(name): x[:, i] for i, name in enumerate(columns)}


def image_features(x: npt.NDArray[np.float64]) -> Features:
    """Per-channel brightness, contrast and Laplacian-variance blur of ``(N, C, H, W)``."""
    n, channels = x.shape[:2]
    brightness = x.mean(axis=(2, 3))
    contrast = x.std(axis=(2, 3))
    if x.shape[2] >= 3 and x.shape[3] >= 3:
        centre = x[:, :, 1:-1, 1:-1]
        laplacian = (
            x[:, :, :-2, 1:-1] + x[:, :, 2:, 1:-1] + x[:, :, 1:-1, :-2] + x[:, :, 1:-1, 2:]
        ) - 4.0 * centre
        blur = laplacian.var(axis=(2, 3))
    else:  # no interior pixel: the Laplacian is undefined, report "no detail"
        blur = np.zeros((n, channels))
    return _per_channel(IMAGE_STATS, (brightness, contrast, blur))


def sensor_features(x: npt.NDArray[np.float64]) -> Features:
    """Per-channel mean, standard deviation and first-difference variance of ``(N, C, L)``."""
    n, channels = x.shape[:2]
    roughness = np.diff(x, axis=2).var(axis=2) if x.shape[2] >= 2 else np.zeros((n, channels))
    return _per_channel(SENSOR_STATS, (x.mean(axis=2), x.std(axis=2), roughness))


def _per_channel(stats: Sequence[str], values: Sequence[npt.NDArray[np.float64]]) -> Features:
    channels = values[0].shape[1]
    return {
        f"{stat}_{c}": np.ascontiguousarray(value[:, c])
        for c in range(channels)
        for stat, value in zip(stats, values, strict=True)
    }
