"""The drift-detector verb and what every detector shares: sizes, coarsening, the result.

A detector tests one block: ``test(reference_counts, current_counts) -> FeatureDrift``.
Both arguments are bin counts, and the reference is treated as a *sample* of its size
(two-sample tests), never as exact frequencies: with a 10,000-row reference and a
5,000-row window the reference's own noise is a third of the total, and a test that
ignores it (Evidently's chi-squared) raises false alarms that grow with the window.

Every detector returns a p-value from the statistic's null distribution for *these* two
sample sizes and, from it, the per-window-size threshold on its score (``threshold``: the
score at which ``p == alpha``). The thresholds therefore shrink as windows grow, unlike
fixed distance cut-offs (PSI 0.1/0.25, Wasserstein/JS 0.1) that flag most 50-row null
windows and miss real shifts at 5,000 rows.

Small windows: bins are coarsened (adjacent bins merged, by the reference's mass only, so
the grouping never looks at the current window) until each group expects at least
``min_expected`` current rows; chi-squared approximations hold from there. Below
``min_current`` rows (or ``min_reference``) a detector answers "not enough data" with
``drifted=False`` instead of a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput

__all__ = [
    "DEFAULT_ALPHA",
    "MIN_CURRENT",
    "MIN_EXPECTED",
    "MIN_REFERENCE",
    "BinnedDetector",
    "DriftDetector",
    "FeatureDrift",
    "coarsen",
    "coarsen_labels",
]

DEFAULT_ALPHA = 0.01
MIN_CURRENT = 50
MIN_REFERENCE = 100
MIN_EXPECTED = 5.0

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FeatureDrift:
    """The answer of one detector on one block.

    Attributes:
        method: the detector (``psi``, ``jensen_shannon``, ``wasserstein``, ``chi_squared``).
        score: the statistic (PSI, JS distance, normalised Wasserstein, chi-squared).
        p_value: probability of a score this large without drift (None: not tested).
        threshold: the score at which ``p_value == alpha`` for these sample sizes.
        drifted: ``p_value < alpha`` (always False when not tested).
        n: rows in the current window.
        reason: a sentence for people ("not enough data: 12 rows < 50", ...).
    """

    method: str
    score: float
    p_value: float | None
    threshold: float | None
    drifted: bool
    n: int
    reason: str

    @property
    def is_tested(self) -> bool:
        return self.p_value is not None


class DriftDetector(Protocol):
    """The verb every detector implements."""

    name: str

    def test(self, reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike) -> FeatureDrift:
        """Test whether ``current_counts`` come from the distribution of ``reference_counts``."""
        ...


def as_counts(
    reference_counts: npt.ArrayLike, current_counts: npt.ArrayLike
) -> tuple[Counts, Counts]:
    """Both count vectors as int64 arrays of one length, or ``InvalidInput``."""
    reference = np.asarray(reference_counts, dtype=np.int64).reshape(-1)
    current = np.asarray(current_counts, dtype=np.int64).reshape(-1)
    if reference.shape != current.shape or reference.size < 2:
        raise InvalidInput(
            f"reference and current counts must have one length >= 2; got "
            f"{reference.size} and {current.size}. Use sketches of the same profile."
        )
    if (reference < 0).any() or (current < 0).any():
        raise InvalidInput("bin counts must be >= 0.")
    return reference, current


def too_small(
    method: str, reference: Counts, current: Counts, min_reference: int, min_current: int
) -> FeatureDrift | None:
    """A "not enough data" answer when a side is below its minimum, else None."""
    n_ref, n_cur = int(reference.sum()), int(current.sum())
    if n_cur < min_current:
        reason = f"not enough data: {n_cur} rows in the window < {min_current}"
    elif n_ref < min_reference:
        reason = f"not enough data: {n_ref} reference rows < {min_reference}"
    else:
        return None
    return FeatureDrift(method, float("nan"), None, None, False, n_cur, reason)


def coarsen_labels(
    reference: Counts, n_current: int, min_expected: float = MIN_EXPECTED
) -> npt.NDArray[np.int64]:
    """Group label of each bin: adjacent bins merged until each expects >= ``min_expected``.

    The grouping uses only the reference's proportions and the window size, so it is fixed
    before the window's counts are looked at and keeps the test's level.
    """
    share = reference / max(int(reference.sum()), 1)
    need = min_expected / max(n_current, 1)
    groups: list[int] = []
    mass = 0.0
    group = 0
    for value in share:
        groups.append(group)
        mass += float(value)
        if mass >= need:
            group += 1
            mass = 0.0
    labels = np.asarray(groups, dtype=np.int64)
    if group > 0 and (labels == group).any():  # a light last group joins the one before
        labels[labels == group] = group - 1
    return labels


def coarsen(
    reference: Counts, current: Counts, min_expected: float = MIN_EXPECTED
) -> tuple[Counts, Counts]:
    """Both count vectors summed over the groups of ``coarsen_labels``."""
    labels = coarsen_labels(reference, int(current.sum()), min_expected)
    size = int(labels.max()) + 1
    return (
        np.bincount(labels, weights=reference, minlength=size).astype(np.int64),
        np.bincount(labels, weights=current, minlength=size).astype(np.int64),
    )


def decide(
    method: str, score: float, p_value: float, threshold: float, alpha: float, n: int
) -> FeatureDrift:
    """The FeatureDrift of a tested block."""
    drifted = p_value < alpha
    verdict = "drift" if drifted else "no drift"
    reason = (
        f"{verdict}: p={p_value:.3g} vs alpha={alpha:g} "
        f"(score {score:.4g}, threshold {threshold:.4g})"
    )
    return FeatureDrift(method, score, p_value, threshold, drifted, n, reason)


class BinnedDetector:
    """The shape every binned two-sample test here shares: the sizes checked, bins that
    would expect fewer than ``min_expected`` window rows merged, the degrees of freedom
    counted, then the subclass's ``_statistic`` gives (score, p-value, threshold) for the
    window's size and ``decide`` turns them into a ``FeatureDrift``.

    Args:
        alpha: the per-block false-alarm rate.
        min_current: fewer window rows than this is "not enough data".
        min_reference: fewer reference rows than this is "not enough data".
        min_expected: the fewest window rows a (merged) bin must expect.
    """

    name: str

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
        """Test the window's counts against the reference's (same bins)."""
        reference, current = as_counts(reference_counts, current_counts)
        small = too_small(self.name, reference, current, self.min_reference, self.min_current)
        if small is not None:
            return small
        reference, current = coarsen(reference, current, self.min_expected)
        n = int(current.sum())
        df = self._degrees_of_freedom(reference, current)
        if df < 1:
            return FeatureDrift(self.name, 0.0, None, None, False, n, "not enough data: one group")
        score, p_value, threshold = self._statistic(reference, current, n, df)
        return decide(self.name, score, p_value, threshold, self.alpha, n)

    def _degrees_of_freedom(self, reference: Counts, current: Counts) -> int:
        return int(reference.size) - 1

    def _statistic(
        self, reference: Counts, current: Counts, n: int, df: int
    ) -> tuple[float, float, float]:
        """(score, p-value, threshold) of the coarsened counts."""
        raise NotImplementedError
