"""Aggregators: FedAvg (sample-weighted mean) and robust ones.

- :func:`fedavg`: ``sum_i n_i Δ_i / sum_i n_i`` (McMahan et al. 2017).
- :func:`trimmed_mean`: per coordinate, drop the ``β n`` largest and ``β n`` smallest
  values and average the rest (Yin et al. 2018). With ``β`` at least the fraction of
  malicious clients, any one coordinate is an average of values between honest ones.
- :func:`coordinate_median`: per coordinate median (``β -> 1/2``).
- :func:`centered_clipping`: whole-vector clipping around a centre, iterated
  (Karimireddy, He & Jaggi, ICML 2021); the radius defaults to the median distance.
- :func:`fltrust`: each update weighted by its cosine with a reference update the server
  computes on a small labelled set of its own, negative ones dropped (Cao et al., NDSS 2021).

Why the vector-wise ones: on non-IID clients (two classes each in the benchmark) a
coordinate — the weights of one class — carries signal only from the few clients holding
that class, so per-coordinate statistics discard it as an outlier; the trimmed mean and
the median lost 9-12 accuracy points with no attacker at all (docs/benchmarks.md,
"Robustness"). Centered clipping bounds every update's pull without looking at single
coordinates; FLTrust also tells a label-flipped update (it points away from the reference)
from an honest one of other classes, which none of the update-only aggregators measured
there could.

Robust aggregators ignore sample counts: a client that lies about its updates can lie
about its count too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["centered_clipping", "coordinate_median", "fedavg", "fltrust", "trimmed_mean"]


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


def centered_clipping(
    updates: Sequence[np.ndarray],
    *,
    center: np.ndarray | None = None,
    radius: float | None = None,
    iterations: int = 3,
) -> np.ndarray:
    """Return the centered-clipping aggregate (Karimireddy, He & Jaggi, ICML 2021).

    Starting from ``v = center``, each iteration moves ``v`` by the mean of the updates'
    offsets ``Δ_i - v``, each clipped to L2 norm ``radius``: an update ten times too long
    pulls no harder than one at the radius, whatever its coordinates.

    Args:
        updates: the round's updates (equal lengths, finite).
        center: where to start; ``None`` is zero (no move: the updates are deltas).
        radius: the clipping radius; ``None`` takes, in every iteration, the median
            distance of the updates to ``v`` — bounded by the honest majority, so it needs
            no tuning to the model's scale (the paper's fixed ``τ`` does).
        iterations: how many times to re-centre (the paper uses 1-3), >= 1.

    Raises:
        InvalidInput: no updates, non-finite values, a centre of another length, a radius
            that is not a positive finite number, or ``iterations`` < 1.
    """
    matrix = _stack(updates)
    if not (isinstance(iterations, int) and iterations >= 1):
        raise InvalidInput(f"iterations must be an int >= 1; got {iterations!r}")
    if radius is not None and not (np.isfinite(radius) and radius > 0):
        raise InvalidInput(f"radius must be a positive finite number or None; got {radius!r}")
    v = np.zeros(matrix.shape[1]) if center is None else _reference(center, matrix, "center")
    for _ in range(iterations):
        offsets = matrix - v
        norms = np.linalg.norm(offsets, axis=1)
        tau = float(np.median(norms)) if radius is None else radius
        scale = np.minimum(1.0, tau / np.maximum(norms, np.finfo(np.float64).tiny))
        v = v + (offsets * scale[:, None]).mean(axis=0)
    return v


def fltrust(
    updates: Sequence[np.ndarray], reference: np.ndarray, *, norm: float | None = None
) -> np.ndarray:
    """Return the FLTrust aggregate of ``updates`` against the server's ``reference``.

    FLTrust (Cao, Fang, Liu & Gong, NDSS 2021): the server trains the same model on a
    small clean labelled set of its own (the root set, ~100 samples suffice in the paper)
    to get ``reference``; each update gets the trust score ``ReLU(cos(Δ_i, reference))``,
    is rescaled to length ``norm`` and the result is the trust-weighted mean. An update
    pointing away from the reference (labels flipped) gets weight 0; a scaled one only
    its direction's.

    Args:
        updates: the round's updates (equal lengths, finite).
        reference: the server's update from its root set, same length, non-zero.
        norm: the length every update is rescaled to; ``None`` is the paper's
            ``‖reference‖``. The simulation passes the cohort's median norm: a root set
            of a different size than a client's data takes a different number of local
            steps, so its length is not the clients' scale.

    Returns:
        The aggregate; zeros when no update has a positive cosine with the reference.

    Raises:
        InvalidInput: no updates, non-finite values, a reference of another length or of
            norm 0, or a ``norm`` that is not a non-negative finite number.
    """
    matrix = _stack(updates)
    ref = _reference(reference, matrix, "reference")
    ref_norm = float(np.linalg.norm(ref))
    if ref_norm == 0:
        raise InvalidInput("reference must be a non-zero update (the root set's training step)")
    if norm is not None and not (np.isfinite(norm) and norm >= 0):
        raise InvalidInput(f"norm must be a non-negative finite number or None; got {norm!r}")
    target = ref_norm if norm is None else norm
    norms = np.linalg.norm(matrix, axis=1)
    safe = np.maximum(norms, np.finfo(np.float64).tiny)
    trust = np.maximum(0.0, matrix @ ref / (safe * ref_norm))
    if trust.sum() == 0:
        return np.zeros(matrix.shape[1])
    return (trust * (target / safe)) @ matrix / trust.sum()


def _reference(vector: np.ndarray, matrix: np.ndarray, name: str) -> np.ndarray:
    ref = np.asarray(vector, dtype=np.float64).ravel()
    if ref.shape != (matrix.shape[1],):
        raise InvalidInput(f"{name} must have {matrix.shape[1]} values; got {ref.size}")
    if not np.all(np.isfinite(ref)):
        raise InvalidInput(f"{name} must be finite")
    return ref
