"""Aggregates per (model version, device class): latency percentiles, rates, accuracy.

``aggregate(rows)`` is a pure function over joined event rows (tuples), tested on
constructed data with known answers; ``aggregate_events(events)`` computes the same
metrics column-wise with numpy on the store's ``EventRows`` (a million events in tens of
milliseconds). Percentiles are numpy's linear interpolation, as ``numpy.percentile``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pocketml.telemetry._types import EventRows, MetricsRow

__all__ = ["aggregate", "aggregate_events"]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _group_metrics(version: Any, device_class: Any, rows: list[tuple[Any, ...]]) -> MetricsRow:
    inferences = [row for row in rows if row[2] == "inference"]
    errors = len(rows) - len(inferences)
    latencies = np.array([row[4] for row in inferences if row[4] is not None], dtype=np.float64)
    confidences = [row[5] for row in inferences if row[5] is not None]
    labelled = [row for row in inferences if row[7] is not None]
    correct = sum(1 for row in labelled if row[6] is not None and row[6] == row[7])
    count = len(inferences)
    return MetricsRow(
        version=version,
        device_class=device_class,
        count=count,
        errors=errors,
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies.size else None,
        latency_p95_ms=float(np.percentile(latencies, 95)) if latencies.size else None,
        error_rate=_share(errors, count + errors),
        cloud_share=_share(sum(1 for row in inferences if row[3] == "cloud"), count),
        fallback_share=_share(sum(1 for row in inferences if row[3] == "fallback"), count),
        mean_confidence=float(np.mean(confidences)) if confidences else None,
        feedback_count=len(labelled),
        accuracy=_share(correct, len(labelled)),
    )


def aggregate(rows: Iterable[tuple[Any, ...]]) -> list[MetricsRow]:
    """Group event rows by (version, device class) and compute their metrics.

    Args:
        rows: tuples (version, device_class, type, source, latency_ms, confidence,
            label, feedback_label) of inference and error events.

    Returns:
        One ``MetricsRow`` per group, sorted by version (newest first) then device class.
    """
    groups: dict[tuple[Any, Any], list[tuple[Any, ...]]] = defaultdict(list)
    for row in rows:
        groups[(row[0], row[1])].append(row)
    result = [_group_metrics(v, dc, group) for (v, dc), group in groups.items()]
    result.sort(key=lambda m: (-(m.version or 0), m.device_class or ""))
    return result


def _is(column: pa.Array, value: str) -> np.ndarray:
    """Boolean numpy mask: ``column == value`` (null is False)."""
    return np.asarray(pc.fill_null(pc.equal(column, value), False).to_numpy(zero_copy_only=False))


def _floats(column: pa.Array) -> np.ndarray:
    """A float64 numpy array, NaN where null."""
    return np.asarray(pc.fill_null(column, np.nan).to_numpy(zero_copy_only=False), np.float64)


def _codes(column: pa.Array) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes (-1 for null) and the distinct values of a column."""
    encoded = pc.dictionary_encode(column)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return np.asarray(codes, np.int64), encoded.dictionary.to_pylist()


def aggregate_events(events: EventRows) -> list[MetricsRow]:
    """``aggregate(events.rows())``, computed column-wise.

    Args:
        events: inference and error events with their feedback labels.

    Returns:
        One ``MetricsRow`` per (version, device class), sorted like ``aggregate``.
    """
    if len(events) == 0:
        return []
    versions, version_values = _codes(events.version)
    classes, class_values = _codes(events.device_class)
    keys = (versions + 1) * (len(class_values) + 1) + (classes + 1)
    groups, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # stable: each group keeps event order
    bounds = np.concatenate(([0], np.cumsum(np.bincount(inverse))))
    inference = _is(events.type, "inference")[order]
    cloud = _is(events.source, "cloud")[order]
    fallback = _is(events.source, "fallback")[order]
    latency = _floats(events.latency_ms)[order]
    confidence = _floats(events.confidence)[order]
    labelled = np.asarray(events.feedback_label.is_valid().to_numpy(zero_copy_only=False))[order]
    same = pc.fill_null(pc.equal(events.label, events.feedback_label), False)
    correct = np.asarray(same.to_numpy(zero_copy_only=False))[order]
    result = []
    for g, key in enumerate(groups):
        part = slice(bounds[g], bounds[g + 1])
        is_inf = inference[part]
        count = int(is_inf.sum())
        errors = int(bounds[g + 1] - bounds[g]) - count
        lat = latency[part][is_inf]
        lat = lat[~np.isnan(lat)]
        conf = confidence[part][is_inf]
        conf = conf[~np.isnan(conf)]
        has_feedback = labelled[part] & is_inf
        n_feedback = int(has_feedback.sum())
        version_code, class_code = divmod(int(key), len(class_values) + 1)
        result.append(
            MetricsRow(
                version=version_values[version_code - 1] if version_code else None,
                device_class=class_values[class_code - 1] if class_code else None,
                count=count,
                errors=errors,
                latency_p50_ms=float(np.percentile(lat, 50)) if lat.size else None,
                latency_p95_ms=float(np.percentile(lat, 95)) if lat.size else None,
                error_rate=_share(errors, count + errors),
                cloud_share=_share(int((cloud[part] & is_inf).sum()), count),
                fallback_share=_share(int((fallback[part] & is_inf).sum()), count),
                mean_confidence=float(np.mean(conf)) if conf.size else None,
                feedback_count=n_feedback,
                accuracy=_share(int((correct[part] & has_feedback).sum()), n_feedback),
            )
        )
    result.sort(key=lambda m: (-(m.version or 0), m.device_class or ""))
    return result
