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

from pocketml.monitor._detector import (
    DEFAULT_ALPHA,
    MIN_CURRENT,
    MIN_EXPECTED,
    MIN_REFERENCE,
    FeatureDrift,
    as_counts,
    coarsen,
    decide,
    too_small,
)

__all__ = ["ChiSquaredDetector", "chi_squared_statistic"]


def chi_squared_statistic(
    reference: npt.NDArray[np.int64], current: npt.NDArray[np.int64]
) -> float:
    """Pearson's statistic of the 2 x K homogeneity table (empty columns dropped)."""
    keep = (reference + current) > 0
    table = np.vstack([reference[keep], current[keep]]).astype(np.float64)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


class ChiSquaredDetector:
    """Two-sample chi-squared test on binned counts."""

    name = "chi_squared"

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        min_current: int = MIN_CURRENT,
        min_reference: int = MIN_REFERENCE,
        min_expected: float = MIN_EXPECTED,
    ) -> None:
        self.alpha = alpha
        self.min_current = min_current
        self.min_reference = min_reference
        self.min_expected = min_expected

    def test(self, reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> FeatureDrift:
        reference, current = as_counts(reference_counts, current_counts)
        small = too_small(self.name, reference, current, self.min_reference, self.min_current)
        if small is not None:
            return small
        reference, current = coarsen(reference, current, self.min_expected)
        df = int(((reference + current) > 0).sum()) - 1
        n = int(current.sum())
        if df < 1:
            return FeatureDrift(self.name, 0.0, None, None, False, n, "not enough data: one group")
        score = chi_squared_statistic(reference, current)
        p_value = float(stats.chi2.sf(score, df))
        threshold = float(stats.chi2.isf(self.alpha, df))
        return decide(self.name, score, p_value, threshold, self.alpha, n)
