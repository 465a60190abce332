"""aggregate(): metrics per (version, device class) on constructed rows with known answers."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from pocketml.telemetry import EventRows, aggregate, aggregate_events

# (version, device_class, type, source, latency_ms, confidence, label, feedback_label)
ROWS = [
    (2, "android-low", "inference", "local", 10.0, 0.9, "7", "7"),
    (2, "android-low", "inference", "local", 20.0, 0.5, "1", "4"),
    (2, "android-low", "inference", "cloud", 30.0, 0.7, "3", None),
    (2, "android-low", "inference", "fallback", 40.0, 0.3, "2", "2"),
    (2, "android-low", "error", None, None, None, None, None),
    (1, "iphone", "inference", "local", 5.0, 1.0, "0", None),
]


def test_each_group_gets_its_known_metrics() -> None:
    low, iphone = aggregate(ROWS)
    assert (low.version, low.device_class, iphone.version) == (2, "android-low", 1)
    assert low.count == 4 and low.errors == 1
    assert low.latency_p50_ms == pytest.approx(25.0)
    assert low.latency_p95_ms == pytest.approx(38.5)  # numpy linear: 30 + 0.85 * 10
    assert low.error_rate == pytest.approx(1 / 5)
    assert low.cloud_share == pytest.approx(0.25) and low.fallback_share == pytest.approx(0.25)
    assert low.mean_confidence == pytest.approx(0.6)
    assert low.feedback_count == 3 and low.accuracy == pytest.approx(2 / 3)


def test_accuracy_is_none_without_feedback_and_rates_none_without_events() -> None:
    (iphone,) = aggregate([ROWS[-1]])
    assert iphone.accuracy is None and iphone.feedback_count == 0
    (errors_only,) = aggregate([ROWS[4]])
    assert errors_only.count == 0 and errors_only.latency_p50_ms is None
    assert errors_only.cloud_share is None and errors_only.error_rate == 1.0


def test_no_rows_give_no_groups() -> None:
    assert aggregate([]) == []


def _columns(rows: list[tuple[Any, ...]]) -> EventRows:
    names = ("version", "device_class", "type", "source", "latency_ms", "confidence", "label")
    kinds = (pa.int64(), pa.string(), pa.string(), pa.string(), pa.float64(), pa.float64())
    columns = {
        name: pa.array([row[i] for row in rows], kind)
        for i, (name, kind) in enumerate(zip(names, (*kinds, pa.string()), strict=True))
    }
    return EventRows(**columns, feedback_label=pa.array([row[7] for row in rows], pa.string()))


MIXED = [
    *ROWS,
    (None, None, "inference", "local", 7.0, None, "1", "1"),
    (None, None, "inference", None, None, 0.2, None, "1"),
    (2, "iphone", "error", None, None, None, None, None),
    (3, "android-low", "inference", "cloud", 1.0, 0.9, "5", "6"),
]


def test_the_columnar_aggregate_equals_the_row_aggregate() -> None:
    assert aggregate_events(_columns(MIXED)) == aggregate(MIXED)
    assert aggregate_events(_columns([])) == []


def test_arm_samples_from_columns_equal_arm_samples_from_rows() -> None:
    from pocketml.delivery.guardrails import ArmSample

    rows = [row[2:] for row in MIXED]

    assert ArmSample.from_events(_columns(MIXED)) == ArmSample.from_rows(rows)
