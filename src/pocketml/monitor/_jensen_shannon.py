"""Jensen-Shannon distance with a threshold per window size.

JS distance = sqrt(JSD), JSD in nats between the two bin-share vectors. To second order
``JSD = (1/8) sum (c - r)^2 / m`` with ``m`` the midpoint, so without drift
``8 JSD / (1/n_ref + 1/n_cur)`` follows chi-squared with K'-1 degrees of freedom, and the
distance threshold is ``sqrt(chi2.isf(alpha, K'-1) * (1/n_ref + 1/n_cur) / 8)``. Evidently
uses a fixed 0.1 for any window once the reference has more than 1,000 rows.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial.distance import jensenshannon

from pocketml.monitor._detector import BinnedDetector, Counts

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

    def _statistic(
        self, reference: Counts, current: Counts, n: int, df: int
    ) -> tuple[float, float, float]:
        scale = 1 / int(reference.sum()) + 1 / n
        score = js_distance(reference, current)
        p_value = float(stats.chi2.sf(8 * score**2 / scale, df))
        threshold = float(np.sqrt(stats.chi2.isf(self.alpha, df) * scale / 8))
        return score, p_value, threshold
