"""Population Stability Index with a threshold per window size.

PSI = sum (c - r) ln(c / r) over bin shares (0.5 added to every count so empty bins stay
finite). It is the symmetric Kullback-Leibler (Jeffreys) divergence, and without drift
``PSI / (1/n_ref + 1/n_cur)`` follows chi-squared with K'-1 degrees of freedom to first
order (the same limit as Pearson's statistic). So the threshold is
``chi2.isf(alpha, K'-1) * (1/n_ref + 1/n_cur)``: 0.44 for 50 rows against 10,000 (9 groups)
and 0.012 for 5,000 rows, where the folklore cut-offs 0.1 / 0.25 are one number for all sizes.
With noisy (local DP) counts the score is taken of counts clipped at 0 and the null is the
distribution of ``sum d^2 / p`` under the noise-inflated covariance (``Groups.distance_null``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pocketml.monitor._detector import LOG_NOISE_SD, BinnedDetector, Groups

__all__ = ["PSIDetector", "psi"]

PSEUDO_COUNT = 0.5


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI of two count vectors (``PSEUDO_COUNT`` added to every bin)."""
    r = np.asarray(reference, dtype=np.float64) + PSEUDO_COUNT
    c = np.asarray(current, dtype=np.float64) + PSEUDO_COUNT
    r /= r.sum()
    c /= c.sum()
    return float(((c - r) * np.log(c / r)).sum())


class PSIDetector(BinnedDetector):
    """PSI with its chi-squared-calibrated, window-size-dependent threshold."""

    name = "psi"
    noise_sd = LOG_NOISE_SD

    def _statistic(self, groups: Groups, df: int) -> tuple[float, float, float]:
        score = psi(*groups.clipped())
        null = groups.distance_null(df)
        p_value = null.sf(score)
        threshold = null.isf(self.alpha)
        return score, p_value, threshold
