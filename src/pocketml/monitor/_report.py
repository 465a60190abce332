"""The drift and accuracy reports: what a plot, a table and an alert need, as plain values.

Pure functions over a profile and merged sketches (no database): ``group_drift`` runs
``detect_drift`` on one group's merged sketch and turns every block's result into a
``FeatureReport`` that carries both histograms with their bin labels and edges, so a
console or a PNG can draw reference vs current without reading the profile again.

Three states per feature and per group, never two: ``drift``, ``no_drift`` and
``not_enough_data``. A window below the detectors' minimum (``MIN_CURRENT`` rows) is
``not_enough_data`` with the detector's reason, so a quiet night shift on one device class
never reads as "no drift" and never raises a false alarm.

Noisy counts (local differential privacy) can be negative after merging. They are tested
as they are, with the summed per-bin noise variance of the window (and of the previous
window, against ``previous``) passed to ``detect_drift``, whose tests put the noise into
their null distribution (docs/monitoring.md, "Noisy counts").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from pocketml.monitor._dataset import DatasetDrift, detect_drift
from pocketml.monitor._detector import DEFAULT_ALPHA, FeatureDrift
from pocketml.sketch import (
    CONFIDENCE_BINS,
    CONFIDENCE_BLOCK,
    PREDICTION_BLOCK,
    ReferenceProfile,
    Sketch,
)

__all__ = [
    "DriftReport",
    "FeatureReport",
    "GroupDrift",
    "Histogram",
    "SeriesPoint",
    "State",
    "bin_labels",
    "group_drift",
    "series_point",
    "window_sketch",
]

State = Literal["drift", "no_drift", "not_enough_data"]
BlockKind = Literal["numeric", "categorical", "projection", "prediction", "confidence"]


@dataclass(frozen=True)
class Histogram:
    """Reference and current counts of one block, with what a plot needs to draw them.

    Attributes:
        labels: one label per bin (``"[0.1, 0.4)"``, a category, ``"other"``, a class).
        edges: numeric blocks only: the bin edges (``len(labels) - 1`` of them; the first
            and last bins are the under- and overflow); empty otherwise.
        reference, current: counts per bin (the baseline's and the window's).
    """

    labels: tuple[str, ...]
    edges: tuple[float, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]


@dataclass(frozen=True)
class FeatureReport:
    """One block's test: the detector's answer in the report's words, and its histograms.

    Attributes:
        name: the feature (``x0``, ``brightness_0``), projection (``@pc1``) or block.
        kind: numeric, categorical, projection, prediction or confidence.
        method: the detector (``wasserstein``, ``chi_squared``, ...).
        state: drift, no_drift or not_enough_data (features and projections after the
            Benjamini-Hochberg correction; prediction and confidence on their own).
        score, p_value, threshold: the statistic, its p-value and the score at which
            ``p == alpha`` (None when not tested).
        reason: the detector's sentence for people.
        histogram: reference and current counts with labels and edges.
    """

    name: str
    kind: BlockKind
    method: str
    state: State
    score: float | None
    p_value: float | None
    threshold: float | None
    reason: str
    histogram: Histogram

    @property
    def severity(self) -> float:
        """How far past its threshold the score is (score / threshold; 0 when not tested)."""
        if self.score is None or not self.threshold:
            return 0.0
        return self.score / self.threshold


@dataclass(frozen=True)
class GroupDrift:
    """The drift of one group (the fleet, a device class, ...) over the window.

    Attributes:
        labels: what the group is (``{"device_class": "pixel-8"}``; ``{}`` for the fleet).
        state: drift when a feature or projection is rejected, not_enough_data when none
            was tested, else no_drift.
        n, baseline_n: rows in the window and in the baseline.
        events: device sketches merged into the window.
        noise_variance: summed per-bin variance of the DP noise in the window's counts.
        drifted_share: rejected / tested features (None when none was tested).
        features: per feature, most drifted first.
        multivariate: the PCA projections (the joint-distribution check).
        prediction, confidence: drift of the predicted class and of the confidence.
    """

    labels: Mapping[str, str]
    state: State
    n: int
    baseline_n: int
    events: int
    noise_variance: float
    drifted_share: float | None
    features: tuple[FeatureReport, ...]
    multivariate: tuple[FeatureReport, ...]
    prediction: FeatureReport | None
    confidence: FeatureReport | None

    @property
    def top(self) -> FeatureReport | None:
        """The most drifted tested feature (None when none was tested)."""
        tested = [f for f in self.features if f.state != "not_enough_data"]
        return tested[0] if tested else None


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of the drift series (always against the reference profile).

    Attributes:
        start: the bucket's first second (unix), ``end`` its end (exclusive).
        state, n, drifted_share: as in ``GroupDrift``.
        top_feature, top_score, top_method: the most drifted tested feature and its score.
    """

    start: int
    end: int
    state: State
    n: int
    drifted_share: float | None
    top_feature: str | None
    top_score: float | None
    top_method: str | None


@dataclass(frozen=True)
class DriftReport:
    """``MonitorService.drift``: the fleet, each group, and the series over the window.

    Attributes:
        model, version: what was monitored.
        since, until: the window, unix seconds (``since <= window_start < until`` of the
            stored hourly sketches).
        baseline: ``reference`` (the version's profile) or ``previous`` (the window before).
        group_by: the group dimensions (``device_class``, ``app_version``).
        filters: the device_class / app_version the whole report was restricted to.
        alpha: the detectors' level.
        fleet: every group merged.
        groups: one per group, largest first.
        series: the fleet per bucket (``bucket_s`` seconds), oldest first.
    """

    model: str
    version: int
    since: int
    until: int
    baseline: Literal["reference", "previous"]
    group_by: tuple[str, ...]
    filters: Mapping[str, str]
    alpha: float
    bucket_s: int
    fleet: GroupDrift
    groups: tuple[GroupDrift, ...]
    series: tuple[SeriesPoint, ...] = field(default=())


def window_sketch(layout_sketch: Sketch, counts: npt.ArrayLike, n: int) -> Sketch:
    """A merged window as a sketch of ``layout_sketch``'s layout. Noisy counts stay as they
    are (clipping would bias the test); only a noisy row count below 0 becomes 0."""
    return Sketch(layout_sketch.layout, max(int(n), 0), np.asarray(counts, dtype=np.int64))


def bin_labels(profile: ReferenceProfile, block: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """(labels, edges) of a block's bins, in count order."""
    bins = profile.bins_of(block)
    if bins is not None and bins.kind == "numeric":
        edges = bins.edges
        inner = [f"[{_num(a)}, {_num(b)})" for a, b in itertools.pairwise(edges)]
        return (f"< {_num(edges[0])}", *inner, f">= {_num(edges[-1])}"), tuple(edges)
    if bins is not None:
        return (*bins.categories, "other"), ()
    if block == CONFIDENCE_BLOCK:
        width = 1 / CONFIDENCE_BINS
        return (
            tuple(f"[{i * width:.2f}, {(i + 1) * width:.2f})" for i in range(CONFIDENCE_BINS)),
            tuple(i * width for i in range(1, CONFIDENCE_BINS)),
        )
    return tuple(str(i) for i in range(len(profile.reference.block(block)))), ()


def _num(value: float) -> str:
    return f"{value:.4g}"


def _kind(profile: ReferenceProfile, block: str) -> BlockKind:
    if block == PREDICTION_BLOCK:
        return "prediction"
    if block == CONFIDENCE_BLOCK:
        return "confidence"
    if block in profile.projection_names:
        return "projection"
    bins = profile.bins_of(block)
    return "numeric" if bins is not None and bins.kind == "numeric" else "categorical"


def _state(result: FeatureDrift) -> State:
    if not result.is_tested:
        return "not_enough_data"
    return "drift" if result.drifted else "no_drift"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def feature_report(
    profile: ReferenceProfile, block: str, result: FeatureDrift, baseline: Sketch, current: Sketch
) -> FeatureReport:
    """One block's ``FeatureDrift`` with its histograms."""
    labels, edges = bin_labels(profile, block)
    return FeatureReport(
        name=block,
        kind=_kind(profile, block),
        method=result.method,
        state=_state(result),
        score=_finite(result.score) if result.is_tested else None,
        p_value=result.p_value,
        threshold=result.threshold,
        reason=result.reason,
        histogram=Histogram(
            labels,
            edges,
            # For people and plots: a noisy bin below zero is drawn as empty (the test
            # above used the counts as they are).
            tuple(max(int(c), 0) for c in baseline.block(block)),
            tuple(max(int(c), 0) for c in current.block(block)),
        ),
    )


def _ranked(reports: Sequence[FeatureReport]) -> tuple[FeatureReport, ...]:
    """Most drifted first: drifted, then by score / threshold; untested last."""
    order = {"drift": 0, "no_drift": 1, "not_enough_data": 2}
    return tuple(sorted(reports, key=lambda r: (order[r.state], -r.severity, r.name)))


def group_drift(
    profile: ReferenceProfile,
    current: Sketch,
    *,
    baseline: Sketch | None = None,
    labels: Mapping[str, str] | None = None,
    events: int = 0,
    noise_variance: float = 0.0,
    baseline_noise_variance: float = 0.0,
    alpha: float | None = None,
) -> GroupDrift:
    """Test one group's merged window against the profile (or ``baseline``) and report it.

    Args:
        profile: the version's reference profile.
        current: the group's merged window (noisy counts may be negative).
        baseline: the previous window's merged sketch; None = the profile's reference.
        labels: what the group is.
        events: device sketches merged into ``current`` (carried into the report).
        noise_variance, baseline_noise_variance: summed per-bin DP noise variance of
            ``current`` and of ``baseline`` (0 for exact counts and for the profile).
        alpha: the detectors' level (None = their default).

    Raises:
        InvalidInput: a sketch of another layout than the profile's.
    """
    reference = profile.reference if baseline is None else baseline
    result: DatasetDrift = detect_drift(
        profile,
        current,
        reference=baseline,
        alpha=DEFAULT_ALPHA if alpha is None else alpha,
        noise_variance=noise_variance,
        reference_noise_variance=0.0 if baseline is None else baseline_noise_variance,
    )
    features = [
        feature_report(profile, name, drift, reference, current)
        for name, drift in result.features.items()
    ]
    projections = [
        feature_report(profile, name, drift, reference, current)
        for name, drift in result.multivariate.items()
    ]
    tested = [r for r in (*features, *projections) if r.state != "not_enough_data"]
    tested_features = [r for r in features if r.state != "not_enough_data"]
    state: State = "not_enough_data" if not tested else "drift" if result.drifted else "no_drift"
    extra = {
        block: feature_report(profile, block, drift, reference, current)
        for block, drift in (
            (PREDICTION_BLOCK, result.prediction),
            (CONFIDENCE_BLOCK, result.confidence),
        )
        if drift is not None
    }
    return GroupDrift(
        labels=dict(labels or {}),
        state=state,
        n=current.n,
        baseline_n=reference.n,
        events=events,
        noise_variance=noise_variance,
        drifted_share=result.drifted_share if tested_features else None,
        features=_ranked(features),
        multivariate=_ranked(projections),
        prediction=extra.get(PREDICTION_BLOCK),
        confidence=extra.get(CONFIDENCE_BLOCK),
    )


def series_point(start: int, end: int, drift: GroupDrift) -> SeriesPoint:
    """A bucket's summary of a ``group_drift`` result."""
    top = drift.top
    return SeriesPoint(
        start=start,
        end=end,
        state=drift.state,
        n=drift.n,
        drifted_share=drift.drifted_share,
        top_feature=None if top is None else top.name,
        top_score=None if top is None else top.score,
        top_method=None if top is None else top.method,
    )
