"""Accuracy without labels (CBPE-style) and with them (Wilson), and when they disagree.

Label-free estimate: the reference split gives, per confidence bin, how often the model
was right there (the calibration table, a Beta prior of weight 2 centred on the bin's
mid-confidence so an empty bin falls back to the confidence itself). A window's expected
accuracy is ``sum_b count_b * accuracy_b / n``. Its variance has two terms: the window's
own Bernoulli noise ``sum_b count_b a_b (1 - a_b) / n^2`` and the calibration table's
uncertainty ``sum_b (count_b / n)^2 a_b (1 - a_b) / (m_b + 2)``. The estimate holds while
the relation confidence -> correctness holds (covariate shift); it cannot see concept
drift, which is exactly what comparing it with labels reveals.

Realised accuracy: Wilson score interval of correct / labelled. Concept drift is flagged
when the two diverge beyond *both* intervals (each value outside the other's interval).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from pocketml.errors import InvalidInput
from pocketml.sketch import CONFIDENCE_BINS, CONFIDENCE_BLOCK, ReferenceProfile, Sketch

__all__ = [
    "AccuracyComparison",
    "AccuracyInterval",
    "compare_accuracy",
    "estimate_accuracy",
    "realised_accuracy",
]

PRIOR_WEIGHT = 2.0


@dataclass(frozen=True)
class AccuracyInterval:
    """An accuracy with its interval at ``level`` over ``n`` rows (or labels)."""

    value: float
    low: float
    high: float
    n: int
    level: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class AccuracyComparison:
    """The estimate, the realised value and whether they disagree (concept drift)."""

    estimated: AccuracyInterval
    realised: AccuracyInterval
    is_concept_drift: bool
    gap: float


def estimate_accuracy(
    profile: ReferenceProfile, current: Sketch, level: float = 0.95
) -> AccuracyInterval:
    """Label-free accuracy of a window from its confidence histogram.

    Raises:
        InvalidInput: a profile without a calibration table or confidence block, or an
            empty window.
    """
    if profile.calibration_correct is None or CONFIDENCE_BLOCK not in profile.layout.names:
        raise InvalidInput(
            "the profile has no calibration table; build it with confidence= and correct=."
        )
    counts = current.block(CONFIDENCE_BLOCK).astype(np.float64)
    n = int(counts.sum())
    if n == 0:
        raise InvalidInput("the window has no scored rows; nothing to estimate.")
    totals = profile.reference.block(CONFIDENCE_BLOCK).astype(np.float64)
    correct = np.asarray(profile.calibration_correct, dtype=np.float64)
    midpoints = (np.arange(CONFIDENCE_BINS) + 0.5) / CONFIDENCE_BINS
    accuracy = (correct + PRIOR_WEIGHT * midpoints) / (totals + PRIOR_WEIGHT)
    value = float(counts @ accuracy / n)
    spread = accuracy * (1 - accuracy)
    variance = float(counts @ spread) / n**2 + float(
        ((counts / n) ** 2) @ (spread / (totals + PRIOR_WEIGHT))
    )
    half = float(stats.norm.isf((1 - level) / 2)) * np.sqrt(variance)
    return AccuracyInterval(value, max(0.0, value - half), min(1.0, value + half), n, level)


def realised_accuracy(correct: int, total: int, level: float = 0.95) -> AccuracyInterval:
    """Accuracy from labels with its Wilson score interval.

    Raises:
        InvalidInput: ``total < 1`` or ``correct`` outside ``[0, total]``.
    """
    if total < 1 or not 0 <= correct <= total:
        raise InvalidInput(f"need 0 <= correct <= total and total >= 1; got {correct}/{total}.")
    z = float(stats.norm.isf((1 - level) / 2))
    p = correct / total
    centre = (p + z**2 / (2 * total)) / (1 + z**2 / total)
    half = z * np.sqrt(p * (1 - p) / total + z**2 / (4 * total**2)) / (1 + z**2 / total)
    return AccuracyInterval(p, float(centre - half), float(centre + half), total, level)


def compare_accuracy(estimated: AccuracyInterval, realised: AccuracyInterval) -> AccuracyComparison:
    """Concept drift when each value lies outside the other's interval."""
    diverged = not estimated.contains(realised.value) and not realised.contains(estimated.value)
    return AccuracyComparison(estimated, realised, diverged, realised.value - estimated.value)
