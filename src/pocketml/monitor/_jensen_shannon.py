"""Jensen-Shannon distance with a threshold per window size.

JS distance = sqrt(JSD), JSD in nats between the two bin-share vectors. To second order
``JSD = (1/8) sum (c - r)^2 / m`` with ``m`` the midpoint, so without drift
``8 JSD / (1/n_ref + 1/n_cur)`` follows chi-squared with K'-1 degrees of freedom, and the
distance threshold is ``sqrt(chi2.isf(alpha, K'-1) * (1/n_ref + 1/n_cur) / 8)``. Evidently
uses a fixed 0.1 for any window once the reference has more than 1,000 rows.
With noisy (local DP) counts the distance is taken of counts clipped at 0 and ``8 JSD`` gets
the null of ``sum d^2 / p`` under the noise-inflated covariance.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.spatial.distance import jensenshannon

from pocketml.monitor._detector import LOG_NOISE_SD, BinnedDetector, Groups

__all__ = ["JensenShannonDetector", "js_distance"]

# Empty bins make the second-order expansion fail at small windows; smoothing fixes it.
PSEUDO_COUNT = 0.5


def js_distance(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Jensen-Shannon distance (natural log) of two count vectors (+0.5 per bin)."""
    r = np.asarray(reference, dtype=np.float64) + PSEUDO_COUNT
    c = np.asarray(current, dtype=np.float64) + PSEUDO_COUNT
    return float(jensenshannon(r / r.sum(), c / c.sum()))


class JensenShannonDetector(BinnedDetector):
    """JS distance with its chi-squared-calibrated, window-size-dependent threshold."""

    name = "jensen_shannon"
    noise_sd = LOG_NOISE_SD

    def _statistic(self, groups: Groups, df: int) -> tuple[float, float, float]:
        score = js_distance(*groups.clipped())
        null = groups.distance_null(df)
        p_value = null.sf(8 * score**2)
        threshold = float(np.sqrt(null.isf(self.alpha) / 8))
        return score, p_value, threshold
