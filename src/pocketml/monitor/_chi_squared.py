"""Pearson's chi-squared test of homogeneity: the reference and the window as two samples.

The 2 x K table (reference counts, current counts) after coarsening is tested against the
pooled proportions, so the reference's own sampling noise is in the test. Evidently's
default instead compares the window with the reference *frequencies* as if they were
exact, and its false alarms grow with the window. Used for categorical features and the
predicted class; valid for any binned block.

Null: chi-squared with K'-1 degrees of freedom (every group expects >= 5 current rows).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from pocketml.monitor._detector import BinnedDetector, Counts

__all__ = ["ChiSquaredDetector", "chi_squared_statistic"]


def chi_squared_statistic(
    reference: npt.NDArray[np.int64], current: npt.NDArray[np.int64]
) -> float:
    """Pearson's statistic of the 2 x K homogeneity table (empty columns dropped)."""
    keep = (reference + current) > 0
    table = np.vstack([reference[keep], current[keep]]).astype(np.float64)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


class ChiSquaredDetector(BinnedDetector):
    """Two-sample chi-squared test on binned counts."""

    name = "chi_squared"

    def _degrees_of_freedom(self, reference: Counts, current: Counts) -> int:
        return int(((reference + current) > 0).sum()) - 1

    def _statistic(
        self, reference: Counts, current: Counts, n: int, df: int
    ) -> tuple[float, float, float]:
        score = chi_squared_statistic(reference, current)
        p_value = float(stats.chi2.sf(score, df))
        threshold = float(stats.chi2.isf(self.alpha, df))
        return score, p_value, threshold
