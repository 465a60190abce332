"""Aggregates per (model version, device class): latency percentiles, rates, accuracy.

``aggregate(rows)`` is a pure function over the joined event rows the store returns, so
it is tested on constructed data with known answers and behaves the same on SQLite and
PostgreSQL (percentiles are numpy's linear interpolation, as ``numpy.percentile``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from pocketml.telemetry._types import MetricsRow

__all__ = ["aggregate"]


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
