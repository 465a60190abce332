"""Normalised Wasserstein distance on ordered bins, with a threshold per window size.

Each bin's mass sits at a point (inner midpoints; tails one bin width outside the edges),
so ``W1 = sum_i |C_cur(i) - C_ref(i)| * (x[i+1] - x[i])`` over cumulative shares ``C``, in
units of the reference standard deviation (Evidently's "normed" Wasserstein). Being a
CDF distance it sees small location shifts that bin-by-bin tests spread thin.

Null distribution, per window size: without drift the CDF differences ``D_i`` are
asymptotically Gaussian with covariance ``(1/n_ref + 1/n_cur) * C(i)(1 - C(j))``
(i <= j, a Brownian bridge), so ``W = sum g_i |D_i|`` is a weighted sum of correlated
half-normals. Its mean and variance have closed forms
(``E|X||Y| = 2 s_x s_y (sqrt(1 - r^2) + r asin r) / pi``) and a gamma distribution with the
same two moments gives the p-value and the threshold — deterministic, O(K^2), no
simulation at test time. The benchmark measures the false-alarm rate this yields.

Noisy (local DP) counts: the covariance of the share differences gains the noise term of
``share_covariance`` and the CDF differences' covariance is ``L Sigma L^T`` (``L`` the
cumulative sum), of which the Brownian bridge above is the noise-free case; the score is
taken of counts clipped at 0.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from pocketml.errors import InvalidInput
from pocketml.monitor._detector import (
    DEFAULT_ALPHA,
    MIN_CURRENT,
    MIN_EXPECTED,
    MIN_REFERENCE,
    FeatureDrift,
    Groups,
    checked,
    decide,
    too_small,
)

__all__ = ["WassersteinDetector", "binned_wasserstein"]


def binned_wasserstein(
    reference: npt.ArrayLike, current: npt.ArrayLike, points: npt.ArrayLike
) -> float:
    """W1 between two count vectors whose bins sit at increasing ``points``."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    gaps = np.diff(np.asarray(points, dtype=np.float64))
    diff = np.cumsum(c / c.sum())[:-1] - np.cumsum(r / r.sum())[:-1]
    return float(np.abs(diff) @ gaps)


class WassersteinDetector:
    """Normalised binned Wasserstein distance with a gamma-approximated null.

    Args:
        points: where each bin's mass sits (``FeatureBins.points()``), increasing.
        scale: the reference standard deviation; the score is ``W1 / scale``.
    """

    name = "wasserstein"

    def __init__(
        self,
        points: npt.ArrayLike,
        scale: float = 1.0,
        alpha: float = DEFAULT_ALPHA,
        min_current: int = MIN_CURRENT,
        min_reference: int = MIN_REFERENCE,
        min_expected: float = MIN_EXPECTED,
    ) -> None:
        self.min_expected = min_expected
        self.points = np.asarray(points, dtype=np.float64)
        self.scale = scale
        self.alpha = alpha
        self.min_current = min_current
        self.min_reference = min_reference

    def test(
        self,
        reference_counts: npt.ArrayLike,
        current_counts: npt.ArrayLike,
        *,
        noise_variance: npt.ArrayLike = 0.0,
        reference_noise_variance: npt.ArrayLike = 0.0,
    ) -> FeatureDrift:
        reference, current, reference_noise, current_noise = checked(
            reference_counts, current_counts, noise_variance, reference_noise_variance
        )
        if reference.size != self.points.size:
            raise InvalidInput(
                f"counts have {reference.size} bins but the detector has {self.points.size} "
                "points; build it from the same bins."
            )
        small = too_small(self.name, reference, current, self.min_reference, self.min_current)
        if small is not None:
            return small
        # Coarsened bins (each group's mass at its reference-weighted mean point): a small
        # window cannot resolve thin tail bins, and the Gaussian limit fails there.
        groups = Groups.of(reference, current, reference_noise, current_noise, self.min_expected)
        n = round(groups.n)
        size = groups.reference.size
        weight = np.clip(reference, 0, None)
        mass_at = np.bincount(groups.labels, weights=weight * self.points, minlength=size)
        mass = np.bincount(groups.labels, weights=weight, minlength=size)
        points = (mass_at / np.maximum(mass, 1)).astype(np.float64)
        score = binned_wasserstein(*groups.clipped(), points) / self.scale
        shape, theta = self._null_gamma(groups, points)
        if shape <= 0:
            return FeatureDrift(self.name, score, None, None, False, n, "not enough data: one bin")
        p_value = float(stats.gamma.sf(score, shape, scale=theta))
        threshold = float(stats.gamma.isf(self.alpha, shape, scale=theta))
        return decide(self.name, score, p_value, threshold, self.alpha, n)

    def _null_gamma(self, groups: Groups, points: npt.NDArray[np.float64]) -> tuple[float, float]:
        """Shape and scale of the gamma matching the null mean and variance of the score."""
        shares = groups.reference_shares()
        cdf = np.cumsum(shares)[:-1]
        weights = np.diff(points) / self.scale
        if groups.noisy:
            lower = np.tril(np.ones((shares.size, shares.size)))[:-1]
            cov = lower @ groups.covariance(shares) @ lower.T
        else:  # the Brownian bridge, in closed form
            low = np.minimum.outer(cdf, cdf)
            high = np.maximum.outer(cdf, cdf)
            cov = (1 / groups.n_ref + 1 / groups.n) * low * (1 - high)
        keep = (cdf > 0) & (cdf < 1) & (weights > 0)
        cov, weights = cov[np.ix_(keep, keep)], weights[keep]
        if weights.size == 0:
            return 0.0, 0.0
        sd = np.sqrt(np.diag(cov))
        corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        mean_abs = sd * np.sqrt(2 / np.pi)
        joint = 2 * np.outer(sd, sd) * (np.sqrt(1 - corr**2) + corr * np.arcsin(corr)) / np.pi
        mean = float(weights @ mean_abs)
        var = float(weights @ (joint - np.outer(mean_abs, mean_abs)) @ weights)
        if mean <= 0 or var <= 0:
            return 0.0, 0.0
        return mean**2 / var, var / mean
