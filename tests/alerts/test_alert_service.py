"""The alert service on SQLite and PostgreSQL: rules, evaluation from real telemetry,
transitions with their outbox rows and audit entries, acknowledgement, sources."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alerts_kit import T0, World, minutes

from pocketml.errors import Conflict, InvalidInput, NotFound
from pocketml.monitor.alerts import RuleSpec, TelemetryMetrics
from pocketml.monitor.alerts._store import Transition

SLOW = [400.0] * 150
FAST = [20.0] * 150


def latency_rule(world: World, **fields: Any) -> str:
    spec = RuleSpec("latency", "latency_p95_ms", ">", 250.0, window_s=600.0, min_n=100, **fields)
    return world.service.create_rule(world.app_id, "digits", spec, actor="test").id


def outbox(world: World) -> list[Any]:
    with world.registry.store.engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT event, status, alert_id FROM alert_outbox ORDER BY id")
        ).all()


def audit(world: World) -> list[tuple[str, str | None, str | None]]:
    query = (
        "SELECT action, from_state, to_state FROM rollout_audit "
        "WHERE action LIKE 'alert.%' ORDER BY id"
    )
    with world.registry.store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(query))]


def test_slow_telemetry_fires_once_and_resolves_once_with_outbox_and_audit(world: World) -> None:
    latency_rule(world)
    world.service.add_webhook(world.app_id, "http://127.0.0.1:9/a", actor="test")
    world.service.add_webhook(
        world.app_id, "http://127.0.0.1:9/b", fmt="alertmanager", actor="test"
    )
    world.add_events(T0, latencies=SLOW)
    fired = world.service.evaluate(T0 + minutes(1))
    again = world.service.evaluate(T0 + minutes(2))
    world.add_events(T0 + minutes(12), latencies=FAST)
    resolved = world.service.evaluate(T0 + minutes(13))
    assert [o.action for o in fired + again + resolved] == ["fire", "none", "resolve"]
    assert [(e, s) for e, s, _ in outbox(world)] == [("firing", "pending")] * 2 + [
        ("resolved", "pending")
    ] * 2
    assert audit(world) == [
        ("alert.firing", "inactive", "firing"),
        ("alert.resolved", "firing", "resolved"),
    ]
    (alert,) = world.service.list_alerts(world.app_id)
    assert (alert.state, alert.labels) == (
        "resolved",
        {"version": "1", "device_class": "android-mid"},
    )
    assert alert.value == pytest.approx(20.0) and alert.n == 150
    assert alert.starts_at == T0 + minutes(1) and alert.ends_at == T0 + minutes(13)


def test_each_version_and_device_class_is_an_alert_of_its_own(world: World) -> None:
    latency_rule(world)
    world.add_events(T0, latencies=SLOW, device_class="android-low")
    world.add_events(T0, latencies=SLOW, device_class="ios-high")
    world.add_events(T0, latencies=FAST, version=2)
    world.service.evaluate(T0 + minutes(1))
    firing = world.service.list_alerts(world.app_id, states=["firing"])
    assert sorted(a.labels["device_class"] for a in firing) == ["android-low", "ios-high"]
    assert len({a.fingerprint for a in firing}) == 2


def test_a_scope_keeps_only_the_matching_readings(world: World) -> None:
    latency_rule(world, scope={"device_class": "ios-high"})
    world.add_events(T0, latencies=SLOW, device_class="android-low")
    world.add_events(T0, latencies=SLOW, device_class="ios-high")
    world.service.evaluate(T0 + minutes(1))
    (alert,) = world.service.list_alerts(world.app_id)
    assert alert.labels["device_class"] == "ios-high"


def test_too_few_samples_is_not_enough_data_rather_than_an_alarm(world: World) -> None:
    latency_rule(world)
    world.add_events(T0, latencies=[900.0] * 99)
    (outcome,) = world.service.evaluate(T0 + minutes(1))
    assert outcome.action == "none" and outcome.reason.startswith("not enough data")
    assert world.service.list_alerts(world.app_id) == []


def test_a_pending_alert_fires_after_the_for_duration(world: World) -> None:
    latency_rule(world, for_s=300.0)
    world.add_events(T0, latencies=SLOW)
    world.service.add_webhook(world.app_id, "http://127.0.0.1:9/a", actor="test")
    actions = [world.service.evaluate(T0 + minutes(m))[0].action for m in (1, 3, 6)]
    assert actions == ["pend", "none", "fire"]
    assert [e for e, _, _ in outbox(world)] == ["firing"]
    (alert,) = world.service.list_alerts(world.app_id)
    assert (alert.pending_since, alert.starts_at) == (T0 + minutes(1), T0 + minutes(6))


def test_a_resolved_alert_waits_out_its_cool_down_then_opens_a_new_episode(world: World) -> None:
    latency_rule(world, cooldown_s=1800.0)
    world.add_events(T0, latencies=SLOW)
    world.service.evaluate(T0 + minutes(1))
    world.add_events(T0 + minutes(11), latencies=FAST)
    world.service.evaluate(T0 + minutes(12))
    world.add_events(T0 + minutes(20), latencies=SLOW)
    held = world.service.evaluate(T0 + minutes(21))
    world.add_events(T0 + minutes(35), latencies=SLOW)
    refired = world.service.evaluate(T0 + minutes(45))
    assert held[0].action == "none" and "cooling down" in held[0].reason
    assert refired[0].action == "fire"
    episodes = world.service.list_alerts(world.app_id)
    assert [a.state for a in episodes] == ["firing", "resolved"]
    assert episodes[0].fingerprint == episodes[1].fingerprint


def test_an_acknowledged_alert_keeps_its_state_but_notifies_nobody(world: World) -> None:
    latency_rule(world)
    world.service.add_webhook(world.app_id, "http://127.0.0.1:9/a", actor="test")
    world.add_events(T0, latencies=SLOW)
    world.service.evaluate(T0 + minutes(1))
    (alert,) = world.service.list_alerts(world.app_id)
    acked = world.service.ack(world.app_id, alert.id, actor="admin:ops")
    world.add_events(T0 + minutes(12), latencies=FAST)
    world.service.evaluate(T0 + minutes(13))
    assert acked.acked_by == "admin:ops" and acked.state == "firing"
    assert world.service.get_alert(world.app_id, alert.id).state == "resolved"
    assert [e for e, _, _ in outbox(world)] == ["firing"]
    assert ("alert.ack", None, None) in audit(world)


def test_a_metric_without_a_source_waits_until_one_is_registered(world: World) -> None:
    spec = RuleSpec("drift", "drift_share", ">", 0.3, window_s=600.0, min_n=100)
    world.service.create_rule(world.app_id, "digits", spec, actor="test")
    world.add_events(T0, latencies=FAST, source="cloud")
    (waiting,) = world.service.evaluate(T0 + minutes(1))
    # A real source over a table of ours: the share of cloud answers stands in for drift.
    metrics = TelemetryMetrics(world.telemetry)
    world.service.sources.register(
        "drift_share", metrics.reader("drift_share", lambda r: r.cloud_share, lambda r: r.count)
    )
    (fired,) = world.service.evaluate(T0 + minutes(2))
    assert waiting.action == "no_source" and "drift_share" in waiting.reason
    assert fired.action == "fire"


def test_realised_accuracy_fall_compares_with_the_previous_window(world: World) -> None:
    spec = RuleSpec("acc", "accuracy_realised_fall", ">", 0.05, window_s=600.0, min_n=1)
    world.service.create_rule(world.app_id, "digits", spec, actor="test")
    world.add_labelled(T0, correct=95, wrong=5)
    world.add_labelled(T0 + minutes(10), correct=80, wrong=20)
    (outcome,) = world.service.evaluate(T0 + minutes(15))
    (alert,) = world.service.list_alerts(world.app_id)
    assert outcome.action == "fire"
    assert (alert.value, alert.n) == (pytest.approx(0.15), 100)


def test_realised_accuracy_fall_without_an_earlier_window_is_not_enough_data(
    world: World,
) -> None:
    spec = RuleSpec("acc", "accuracy_realised_fall", ">", 0.05, window_s=600.0, min_n=1)
    world.service.create_rule(world.app_id, "digits", spec, actor="test")
    world.add_labelled(T0 + minutes(10), correct=10, wrong=90)
    (outcome,) = world.service.evaluate(T0 + minutes(15))
    assert outcome.action == "none" and outcome.reason.startswith("not enough data")


def test_default_rules_are_created_once_per_name(world: World) -> None:
    first = world.service.create_default_rules(world.app_id, "digits", actor="test")
    second = world.service.create_default_rules(world.app_id, "digits", actor="test")
    names = {r.metric for r in first}
    assert {"drift_share", "psi_max", "accuracy_estimated_drop", "accuracy_realised_drop",
            "latency_p95_ms", "error_rate", "fallback_share"} == names  # fmt: skip
    assert second == []


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"metric": "latency"}, "metric must be one of"),
        ({"comparison": "=="}, "comparison must be one of"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"window_s": 1.0}, "window_s must be in"),
        ({"min_n": 0}, "min_n must be an integer"),
        ({"severity": "page"}, "severity must be one of"),
        ({"scope": {"country": "DE"}}, "scope may hold only"),
        ({"name": "Bad Name"}, "name must be"),
    ],
)
def test_invalid_rules_are_refused_naming_the_field(
    world: World, fields: dict[str, Any], fragment: str
) -> None:
    values: dict[str, Any] = {
        "name": "r",
        "metric": "error_rate",
        "comparison": ">",
        "threshold": 0.1,
    }
    values.update(fields)
    with pytest.raises(InvalidInput, match=fragment):
        world.service.create_rule(world.app_id, "digits", RuleSpec(**values), actor="t")
    assert world.service.list_rules(world.app_id) == []


def test_a_duplicate_rule_name_conflicts_and_an_unknown_model_is_not_found(world: World) -> None:
    latency_rule(world)
    with pytest.raises(Conflict, match="already has an alert rule named 'latency'"):
        latency_rule(world)
    with pytest.raises(NotFound):
        world.service.create_rule(
            world.app_id, "nope", RuleSpec("x", "error_rate", ">", 0.1), actor="t"
        )


def test_deleting_a_rule_deletes_its_alerts(world: World) -> None:
    rule_id = latency_rule(world)
    world.add_events(T0, latencies=SLOW)
    world.service.evaluate(T0 + minutes(1))
    world.service.delete_rule(world.app_id, rule_id, actor="t")
    assert world.service.list_alerts(world.app_id) == []
    with pytest.raises(NotFound):
        world.service.delete_rule(world.app_id, rule_id, actor="t")


def test_a_transition_whose_outbox_row_fails_leaves_no_alert_and_no_audit(world: World) -> None:
    rule_id = latency_rule(world)
    now = T0 + minutes(1)
    values = {
        "app_id": world.app_id, "rule_id": rule_id, "model": "digits", "fingerprint": "f" * 64,
        "active_key": "f" * 64, "labels": {}, "state": "firing", "value": 400.0, "n": 150,
        "pending_since": now, "starts_at": now, "ends_at": None, "evaluated_at": now,
        "acked_at": None, "acked_by": None,
    }  # fmt: skip
    gone_endpoint = {  # a receiver deleted while the pass ran: the foreign key refuses it
        "delivery_id": "d" * 32, "endpoint_id": "no-such-endpoint", "alert_id": "a" * 32,
        "event": "firing", "body": "{}", "status": "pending", "attempts": 0,
        "next_attempt_at": now.timestamp(), "created_at": now,
    }  # fmt: skip
    entry = {"app_id": world.app_id, "subject": "a" * 32, "action": "alert.firing",
             "from_state": "inactive", "to_state": "firing", "actor": "t", "reason": "",
             "details": {}, "at": now}  # fmt: skip
    transition = Transition(
        "a" * 32, values, insert=True, expected_state=None, audit=entry, events=[gone_endpoint]
    )
    assert world.service.store.apply(transition, world.app_id) is False
    assert world.service.list_alerts(world.app_id) == []
    assert audit(world) == [] and outbox(world) == []
