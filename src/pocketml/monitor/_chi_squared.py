"""Pearson's chi-squared test of homogeneity: the reference and the window as two samples.

The 2 x K table (reference counts, current counts) after coarsening is tested against the
pooled proportions, so the reference's own sampling noise is in the test. Evidently's
default instead compares the window with the reference *frequencies* as if they were
exact, and its false alarms grow with the window. Used for categorical features and the
predicted class; valid for any binned block.

Null: chi-squared with K'-1 degrees of freedom (every group expects >= 5 current rows).

Noisy (local DP) counts: the score is the Wald statistic ``d^T Sigma^-1 d`` of the share
differences on K'-1 groups, with ``Sigma`` the multinomial covariance at the pooled shares
plus the noise (``share_covariance``). With no noise it equals Pearson's statistic (for the
2 x K table, Pearson = ``sum d_i^2 / ((1/n_ref + 1/n) p_i)``), so the two are one test.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from pocketml.monitor._detector import BinnedDetector, Groups, share_covariance

__all__ = ["ChiSquaredDetector", "chi_squared_statistic"]


def chi_squared_statistic(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Pearson's statistic of the 2 x K homogeneity table (empty columns dropped)."""
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    keep = (r + c) > 0
    table = np.vstack([r[keep], c[keep]])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


class ChiSquaredDetector(BinnedDetector):
    """Two-sample chi-squared test on binned counts."""

    name = "chi_squared"

    def _degrees_of_freedom(self, groups: Groups) -> int:
        reference, current = groups.clipped()
        return int(((reference + current) > 0).sum()) - 1

    def _statistic(self, groups: Groups, df: int) -> tuple[float, float, float]:
        if groups.noisy:
            score = wald_statistic(groups)
        else:
            score = chi_squared_statistic(groups.reference, groups.current)
        p_value = float(stats.chi2.sf(score, df))
        threshold = float(stats.chi2.isf(self.alpha, df))
        return score, p_value, threshold


def wald_statistic(groups: Groups) -> float:
    """``d^T Sigma^-1 d`` over the non-empty groups but one, noise in ``Sigma``."""
    reference, current = groups.clipped()
    pooled = (reference + current) / max(float((reference + current).sum()), 1.0)
    keep = pooled > 0
    shares = pooled[keep]
    cov = share_covariance(
        shares,
        groups.n_ref,
        groups.n,
        groups.reference_noise[keep],
        groups.current_noise[keep],
    )
    d = groups.difference()[keep][:-1]
    return float(d @ np.linalg.solve(cov[:-1, :-1], d))
