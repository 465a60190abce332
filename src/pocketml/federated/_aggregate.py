"""Aggregators: FedAvg (sample-weighted mean) and two robust ones.

- :func:`fedavg`: ``sum_i n_i Δ_i / sum_i n_i`` (McMahan et al. 2017).
- :func:`trimmed_mean`: per coordinate, drop the ``β n`` largest and ``β n`` smallest
  values and average the rest (Yin et al. 2018). With ``β`` at least the fraction of
  malicious clients, any one coordinate is an average of values between honest ones.
- :func:`coordinate_median`: per coordinate median (``β -> 1/2``).

Robust aggregators ignore sample counts: a client that lies about its updates can lie
about its count too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["coordinate_median", "fedavg", "trimmed_mean"]


def _stack(updates: Sequence[np.ndarray]) -> np.ndarray:
    if len(updates) == 0:
        raise InvalidInput("aggregation needs at least one update")
    matrix = np.stack([np.asarray(u, dtype=np.float64).ravel() for u in updates])
    if not np.all(np.isfinite(matrix)):
        raise InvalidInput("updates must be finite; validate them before aggregating")
    return matrix


def fedavg(updates: Sequence[np.ndarray], num_samples: Sequence[int] | None = None) -> np.ndarray:
    """Return the sample-weighted mean of ``updates`` (the plain mean without counts).

    Raises:
        InvalidInput: no updates, unequal lengths, non-finite values, or counts that are
            not positive or do not match the updates.
    """
    matrix = _stack(updates)
    if num_samples is None:
        return matrix.mean(axis=0)
    weights = np.asarray(num_samples, dtype=np.float64)
    if weights.shape != (matrix.shape[0],) or np.any(weights <= 0):
        raise InvalidInput("num_samples must hold one positive count per update")
    return weights @ matrix / weights.sum()


def trimmed_mean(updates: Sequence[np.ndarray], trim_fraction: float) -> np.ndarray:
    """Return the coordinate-wise mean after trimming ``floor(trim_fraction n)`` per side.

    Raises:
        InvalidInput: ``trim_fraction`` not in ``[0, 0.5)``, or trimming would leave nothing.
    """
    if not 0 <= trim_fraction < 0.5:
        raise InvalidInput(f"trim_fraction must be in [0, 0.5); got {trim_fraction!r}")
    matrix = _stack(updates)
    cut = int(np.floor(trim_fraction * matrix.shape[0]))
    ordered = np.sort(matrix, axis=0)
    return ordered[cut : matrix.shape[0] - cut].mean(axis=0)


def coordinate_median(updates: Sequence[np.ndarray]) -> np.ndarray:
    """Return the coordinate-wise median of ``updates``."""
    return np.median(_stack(updates), axis=0)
