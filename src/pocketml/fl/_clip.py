"""L2 clipping of an update and optional local Gaussian noise.

Clipping bounds what one device can move the global model (the sensitivity that
DP-FedAvg's noise is calibrated to, and what the fixed-point encoding's wrap-around bound
assumes). A device clips before masking because the server, under secure aggregation,
never sees an individual update it could clip itself.
"""

from __future__ import annotations

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["add_gaussian_noise", "clip_update", "l2_norm"]


def l2_norm(update: np.ndarray) -> float:
    """Return the Euclidean norm of ``update`` (flattened)."""
    return float(np.linalg.norm(np.asarray(update, dtype=np.float64).ravel()))


def clip_update(update: np.ndarray, max_norm: float) -> tuple[np.ndarray, bool]:
    """Scale ``update`` down so its L2 norm is at most ``max_norm``.

    Args:
        update: a finite float vector.
        max_norm: the bound, > 0.

    Returns:
        ``(clipped, was_clipped)``: ``clipped = update * min(1, max_norm / ||update||)``,
        and whether the update's norm exceeded the bound (adaptive clipping counts these).

    Raises:
        InvalidInput: ``max_norm`` is not a positive finite number or ``update`` is not finite.
    """
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise InvalidInput(f"max_norm must be a positive finite number; got {max_norm!r}")
    vector = np.asarray(update, dtype=np.float64)
    if not np.all(np.isfinite(vector)):
        raise InvalidInput("an update must be finite (no NaN or Inf) to be clipped")
    norm = l2_norm(vector)
    if norm <= max_norm:
        return vector.copy(), False
    # The float product can land a few ulps above the bound (the norm's own rounding grows
    # with the length); shrink the factor by a relative step that doubles each time, so
    # "clipped" is a promise and the loop ends within a few passes even for long vectors.
    factor, step = max_norm / norm, 2.0**-52
    clipped = vector * factor
    while l2_norm(clipped) > max_norm:
        factor *= 1.0 - step
        step *= 2.0
        clipped = vector * factor
    return clipped, True


def add_gaussian_noise(update: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``update + N(0, std^2 I)`` (local noise, before masking).

    Local noise protects a device even from the aggregate, at a large accuracy cost; the
    usual choice is central noise on the server (DP-FedAvg) with secure aggregation hiding
    the individual updates. ``std = 0`` returns a copy.

    Raises:
        InvalidInput: ``std`` is negative or not finite.
    """
    if not (np.isfinite(std) and std >= 0):
        raise InvalidInput(f"std must be a finite number >= 0; got {std!r}")
    vector = np.asarray(update, dtype=np.float64)
    if std == 0:
        return vector.copy()
    return vector + rng.normal(0.0, std, size=vector.shape)
