"""A model's health as flat readings: what an alert rule compares with its threshold.

``MonitorService.model_health(app_id, model, now=...)`` returns one ``MetricReading`` per
metric per group (the fleet, then each device class). Rules need one number, its sample
size (a rule's minimum n) and where it comes from (its labels); the reports hold far more.

Metrics (``HEALTH_METRICS``), all fractions, never percent:

| metric | value | n |
| --- | --- | --- |
| ``drift_share`` | rejected / tested input features (Benjamini-Hochberg), 0..1 | window rows |
| ``psi_max`` | the largest PSI (+0.5 per bin) over the drifted input features, or 0 | rows |
| ``accuracy_estimated`` | label-free accuracy estimate, 0..1 | window rows |
| ``accuracy_estimated_drop`` | reference accuracy - estimate (> 0: worse) | window rows |
| ``accuracy_realised`` | correct / labelled predictions, 0..1 | labels |
| ``accuracy_realised_drop`` | reference accuracy - realised (> 0: worse) | labels |

``value`` is None when there is not enough data (fewer rows than the detectors' minimum, no
labels, no calibration table): a rule then neither fires nor resolves on it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pocketml.monitor._accuracy_report import AccuracyReport, GroupAccuracy
from pocketml.monitor._detector import MIN_CURRENT
from pocketml.monitor._psi import PSIDetector
from pocketml.monitor._report import DriftReport, GroupDrift

__all__ = ["HEALTH_METRICS", "HealthReader", "MetricReading", "health_readers", "health_readings"]

HEALTH_METRICS = (
    "drift_share",
    "psi_max",
    "accuracy_estimated",
    "accuracy_estimated_drop",
    "accuracy_realised",
    "accuracy_realised_drop",
)


@dataclass(frozen=True)
class MetricReading:
    """One metric of one group.

    Attributes:
        metric: one of ``HEALTH_METRICS``.
        value: the metric (a fraction), or None when there is not enough data.
        n: the sample behind it (window rows, or feedback labels for ``accuracy_realised*``).
        labels: ``model``, ``version`` and, per group, ``device_class`` (and
            ``app_version`` when grouped by it).
    """

    metric: str
    value: float | None
    n: int
    labels: Mapping[str, str] = field(default_factory=dict)


def psi_max(group: GroupDrift) -> float | None:
    """The largest PSI over the group's input features whose test found drift: 0.0 when
    none did, None when none could be tested.

    PSI alone is a distance with a sample-size bias: about (bins - 1) x (1/n_reference +
    1/n_window) under no drift at all, 0.18 for 20 bins, a 134-row reference and a 536-row
    window, so a fixed "PSI > 0.25" rule fires on noise at small windows (the weak spot of
    fixed distance thresholds, docs/benchmarks.md). Counting only features the tests
    rejected makes ``psi_max > 0.25`` mean "significant and large", as a rule should.
    """
    detector = PSIDetector()
    tested = False
    scores = [0.0]
    for feature in group.features:
        if feature.state == "not_enough_data":
            continue
        tested = True
        if feature.state != "drift":
            continue
        result = detector.test(feature.histogram.reference, feature.histogram.current)
        if result.is_tested:
            scores.append(result.score)
    return max(scores) if tested else None


def _drift_readings(group: GroupDrift, labels: Mapping[str, str]) -> list[MetricReading]:
    enough = group.state != "not_enough_data" and group.n >= MIN_CURRENT
    return [
        MetricReading("drift_share", group.drifted_share if enough else None, group.n, labels),
        MetricReading("psi_max", psi_max(group) if enough else None, group.n, labels),
    ]


def _accuracy_readings(
    group: GroupAccuracy, reference: float | None, labels: Mapping[str, str]
) -> list[MetricReading]:
    estimated = None if group.estimated is None else group.estimated.value
    realised = None if group.realised is None else group.realised.value
    return [
        MetricReading("accuracy_estimated", estimated, group.n, labels),
        MetricReading("accuracy_estimated_drop", _drop(reference, estimated), group.n, labels),
        MetricReading("accuracy_realised", realised, group.labelled, labels),
        MetricReading("accuracy_realised_drop", _drop(reference, realised), group.labelled, labels),
    ]


def _drop(reference: float | None, value: float | None) -> float | None:
    return None if reference is None or value is None else reference - value


def health_readings(drift: DriftReport, accuracy: AccuracyReport) -> list[MetricReading]:
    """Every metric of the fleet, then of each group (the two reports share the window)."""
    base = {"model": drift.model, "version": str(drift.version)}
    readings = _drift_readings(drift.fleet, base)
    readings += _accuracy_readings(accuracy.fleet, accuracy.reference_accuracy, base)
    by_labels = {tuple(sorted(g.labels.items())): g for g in accuracy.groups}
    for group in drift.groups:
        labels = {**base, **group.labels}
        readings += _drift_readings(group, labels)
        match = by_labels.pop(tuple(sorted(group.labels.items())), None)
        if match is not None:
            readings += _accuracy_readings(match, accuracy.reference_accuracy, labels)
    for only_labelled in by_labels.values():  # feedback but no sketch in the window
        labels = {**base, **only_labelled.labels}
        readings += _accuracy_readings(only_labelled, accuracy.reference_accuracy, labels)
    return readings


HealthReader = Callable[[str, str, float, float], list[MetricReading]]
"""``reader(app_id, model, window_s, now)``: the readings of one health metric."""
_MEMO = 64


def health_readers(model_health: Callable[..., list[MetricReading]]) -> dict[str, HealthReader]:
    """One reader per metric of ``HEALTH_METRICS`` over ``model_health(app_id, model,
    now=..., window_s=...)``.

    An alert evaluator asks metric by metric; the six readers of one (app, model, window,
    now) share one ``model_health`` call (the last 64 answers are kept), so a pass over six
    rules of a model costs one report, not six.
    """
    memo: OrderedDict[tuple[str, str, float, float], list[MetricReading]] = OrderedDict()
    lock = threading.Lock()

    def readings(app_id: str, model: str, window_s: float, now: float) -> list[MetricReading]:
        key = (app_id, model, float(window_s), float(now))
        with lock:
            if key in memo:
                return memo[key]
        answer = model_health(app_id, model, now=now, window_s=window_s)
        with lock:
            memo[key] = answer
            while len(memo) > _MEMO:
                memo.popitem(last=False)
        return answer

    def reader_of(metric: str) -> HealthReader:
        def read(app_id: str, model: str, window_s: float, now: float) -> list[MetricReading]:
            return [r for r in readings(app_id, model, window_s, now) if r.metric == metric]

        return read

    return {metric: reader_of(metric) for metric in HEALTH_METRICS}
