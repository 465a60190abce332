"""The accuracy report: estimated (label-free) and realised (feedback) accuracy per group.

``group_accuracy`` puts the two side by side for one group: the CBPE-style estimate from
the group's merged confidence histogram and the version's calibration table
(``estimate_accuracy``), the Wilson interval of the feedback labels (``realised_accuracy``),
and ``compare_accuracy``'s concept-drift flag when both exist. A side is None with a reason
rather than a number nobody should trust: fewer than ``MIN_CURRENT`` scored rows (the drift
detectors' minimum, so both reports agree on what "not enough data" means), no labels, a
profile without a calibration table, or labels that cannot be grouped that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pocketml.monitor._accuracy import (
    AccuracyInterval,
    compare_accuracy,
    estimate_accuracy,
    realised_accuracy,
)
from pocketml.monitor._detector import MIN_CURRENT
from pocketml.sketch import CONFIDENCE_BLOCK, ReferenceProfile, Sketch

__all__ = [
    "AccuracyPoint",
    "AccuracyReport",
    "GroupAccuracy",
    "Labels",
    "group_accuracy",
    "reference_accuracy",
]

LEVEL = 0.95

AccuracyState = Literal["consistent", "concept_drift", "not_enough_data"]


@dataclass(frozen=True)
class Labels:
    """Feedback labels of one group: how many, and how many agreed with the prediction.

    ``reason`` says why there are none when labels exist but cannot be grouped so.
    """

    correct: int = 0
    total: int = 0
    reason: str = ""


@dataclass(frozen=True)
class GroupAccuracy:
    """Estimated and realised accuracy of one group over the window.

    Attributes:
        labels: what the group is (``{}`` for the fleet).
        state: concept_drift when estimate and labels disagree beyond both intervals,
            consistent when they agree, not_enough_data when either side is missing.
        n: scored rows in the window's sketches (the estimate's sample).
        labelled: predictions with a feedback label (the realised value's sample).
        estimated, realised: value with a 95 % interval, or None (see the reasons).
        gap: realised - estimated (None unless both exist).
        estimated_reason, realised_reason: why a side is None ("" when it is not).
    """

    labels: Mapping[str, str]
    state: AccuracyState
    n: int
    labelled: int
    estimated: AccuracyInterval | None
    realised: AccuracyInterval | None
    gap: float | None
    estimated_reason: str
    realised_reason: str


@dataclass(frozen=True)
class AccuracyPoint:
    """The fleet's estimated and realised accuracy in one bucket ``[start, end)``."""

    start: int
    end: int
    n: int
    labelled: int
    estimated: AccuracyInterval | None
    realised: AccuracyInterval | None


@dataclass(frozen=True)
class AccuracyReport:
    """``MonitorService.accuracy``: the fleet, each group, and the series over the window.

    Attributes:
        reference_accuracy: the version's accuracy on its reference split (from the
            calibration table; None without one): what the drops are measured from.
        Others as in ``DriftReport``.
    """

    model: str
    version: int
    since: int
    until: int
    group_by: tuple[str, ...]
    filters: Mapping[str, str]
    level: float
    bucket_s: int
    reference_accuracy: float | None
    fleet: GroupAccuracy
    groups: tuple[GroupAccuracy, ...]
    series: tuple[AccuracyPoint, ...] = ()


def reference_accuracy(profile: ReferenceProfile) -> float | None:
    """Share of right predictions on the reference split (None without calibration)."""
    if profile.calibration_correct is None or CONFIDENCE_BLOCK not in profile.layout.names:
        return None
    total = int(profile.reference.block(CONFIDENCE_BLOCK).sum())
    return sum(profile.calibration_correct) / total if total else None


def estimate(profile: ReferenceProfile, current: Sketch) -> tuple[AccuracyInterval | None, str]:
    """The label-free estimate of a window, or None and why."""
    if profile.calibration_correct is None or CONFIDENCE_BLOCK not in profile.layout.names:
        return None, "the version's profile has no calibration table (build it with labels)"
    n = int(np.asarray(current.block(CONFIDENCE_BLOCK)).sum())
    if n < MIN_CURRENT:
        return None, f"not enough data: {n} scored rows in the window < {MIN_CURRENT}"
    return estimate_accuracy(profile, current, LEVEL), ""


def realised(labels: Labels) -> tuple[AccuracyInterval | None, str]:
    """The Wilson interval of the labels, or None and why."""
    if labels.reason:
        return None, labels.reason
    if labels.total < 1:
        return None, "no feedback labels in the window"
    return realised_accuracy(labels.correct, labels.total, LEVEL), ""


def group_accuracy(
    profile: ReferenceProfile,
    current: Sketch,
    labels: Labels,
    *,
    group: Mapping[str, str] | None = None,
) -> GroupAccuracy:
    """Estimated vs realised accuracy of one group's merged window and labels."""
    estimated, estimated_reason = estimate(profile, current)
    actual, realised_reason = realised(labels)
    state: AccuracyState = "not_enough_data"
    gap = None
    if estimated is not None and actual is not None:
        comparison = compare_accuracy(estimated, actual)
        state = "concept_drift" if comparison.is_concept_drift else "consistent"
        gap = comparison.gap
    return GroupAccuracy(
        labels=dict(group or {}),
        state=state,
        n=current.n,
        labelled=labels.total,
        estimated=estimated,
        realised=actual,
        gap=gap,
        estimated_reason=estimated_reason,
        realised_reason=realised_reason,
    )
