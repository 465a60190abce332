"""The alert state machine, pure: fire, de-duplicate, resolve, cool-down, pending, thin data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pocketml.monitor.alerts import AlertRule, Current, MetricReading, judge, next_step

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rule(**fields: object) -> AlertRule:
    values: dict[str, object] = {
        "id": "r1", "app_id": "a", "model": "digits", "name": "latency", "metric": "latency_p95_ms",
        "comparison": ">", "threshold": 250.0, "window_s": 900.0, "min_n": 100,
        "severity": "warning", "for_s": 0.0, "cooldown_s": 600.0, "scope": {},
        "created_by": "t", "created_at": T0,
    }  # fmt: skip
    values.update(fields)
    return AlertRule(**values)  # type: ignore[arg-type]


def reading(value: float | None, n: int = 500) -> MetricReading:
    return MetricReading("latency_p95_ms", value, n, {"version": "1"})


def test_a_breach_fires_at_once_without_a_for_duration() -> None:
    assert next_step(Current(), rule(), reading(300.0), T0).action == "fire"


def test_a_breach_while_firing_is_deduplicated() -> None:
    assert next_step(Current("firing", T0), rule(), reading(900.0), T0).action == "none"


def test_a_clear_reading_resolves_a_firing_alert() -> None:
    step = next_step(Current("firing", T0), rule(), reading(100.0), T0)
    assert step.action == "resolve"
    assert "cleared" in step.reason


def test_a_clear_reading_changes_nothing_when_inactive() -> None:
    assert next_step(Current(), rule(), reading(100.0), T0).action == "none"


@pytest.mark.parametrize(("value", "n"), [(None, 500), (900.0, 99)])
def test_not_enough_data_changes_nothing_in_any_state(value: float | None, n: int) -> None:
    for state in ("inactive", "pending", "firing"):
        step = next_step(Current(state, T0), rule(), reading(value, n), T0)
        assert (step.action, step.reason.startswith("not enough data")) == ("none", True)


def test_a_for_duration_holds_the_breach_pending_until_it_elapses() -> None:
    r = rule(for_s=300.0)
    assert next_step(Current(), r, reading(300.0), T0).action == "pend"
    early = next_step(Current("pending", T0), r, reading(300.0), T0 + timedelta(seconds=299))
    assert early.action == "none"
    due = next_step(Current("pending", T0), r, reading(300.0), T0 + timedelta(seconds=300))
    assert due.action == "fire"


def test_a_pending_alert_that_clears_is_cancelled_without_firing() -> None:
    step = next_step(Current("pending", T0), rule(for_s=300.0), reading(10.0), T0)
    assert step.action == "cancel"


def test_a_resolved_alert_does_not_fire_again_within_the_cool_down() -> None:
    resolved = Current(last_resolved_at=T0)
    assert next_step(resolved, rule(), reading(300.0), T0 + timedelta(seconds=599)).action == "none"
    assert next_step(resolved, rule(), reading(300.0), T0 + timedelta(seconds=600)).action == "fire"


@pytest.mark.parametrize(
    ("comparison", "value", "breached"),
    [(">", 250.0, False), (">=", 250.0, True), ("<", 249.0, True), ("<=", 251.0, False)],
)
def test_each_comparison_judges_the_threshold_itself(
    comparison: str, value: float, breached: bool
) -> None:
    assert judge(rule(comparison=comparison), reading(value)) is breached
