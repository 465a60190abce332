"""The alerting admin API on a live server (SQLite and PostgreSQL): rules, alerts, ack,
webhooks with a real receiver, the delivery log, /metrics, and ingestion that a dead
receiver never blocks.

The server's own alert loops are off; the passes are driven by a second ``AlertService``
on the same database and master key -- a replica, exactly as another server would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alerts_kit import Live, closed_port_url, receiver, serve

from pocketml.db import utcnow
from pocketml.errors import Conflict, InvalidInput, NotFound


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    with serve(tmp_path, database_url) as running:
        yield running


LATENCY = {"name": "latency", "metric": "latency_p95_ms", "threshold": 250.0,
           "window_s": 600.0, "min_n": 100}  # fmt: skip


def test_rules_are_created_listed_and_deleted(live: Live) -> None:
    with live.admin() as client:
        defaults = client.create_default_alert_rules("digits").items
        assert client.create_default_alert_rules("digits").items == []
        rule = client.create_alert_rule("digits", **LATENCY, scope={"version": 1})
        with pytest.raises(Conflict, match="already has an alert rule named 'latency'"):
            client.create_alert_rule("digits", **LATENCY)
        with pytest.raises(NotFound):
            client.create_alert_rule("nope", **LATENCY)
        listed = client.list_alert_rules(model="digits").items
        client.delete_alert_rule(rule.id)
        with pytest.raises(NotFound):
            client.delete_alert_rule(rule.id)
        remaining = client.list_alert_rules().items
    assert len(defaults) == 7 and rule.scope == {"version": "1"}
    assert len(listed) == 8 and len(remaining) == 7


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"metric": "nope"}, "metric must be one of"),
        ({"window_s": 5}, "window_s must be in"),
        ({"min_n": 0}, "min_n must be an integer"),
        ({"comparison": "=="}, "comparison"),
        ({"threshold": "high"}, "threshold"),
        ({"scope": {"country": "DE"}}, "scope"),
    ],
)
def test_an_invalid_rule_answers_422_naming_the_field(
    live: Live, fields: dict[str, Any], fragment: str
) -> None:
    with live.server.http(live.app.admin_token) as http:
        body = {"model": "digits", **LATENCY, **fields}
        response = http.post("/v1/admin/alerts/rules", json=body)
        listed = http.get("/v1/admin/alerts/rules").json()["items"]
    assert response.status_code == 422, response.text
    assert fragment in response.json()["error"]["message"]
    assert listed == []


def test_slow_telemetry_fires_a_signed_event_to_a_real_receiver_then_ack(live: Live) -> None:
    with receiver() as hook, live.admin() as client:
        created = client.add_webhook(hook.url)
        hook.secret = created.secret
        client.create_alert_rule("digits", **LATENCY)
        assert live.send_latencies(400.0) == 202
        (outcome,) = live.replica.evaluate()
        sent = live.replica.deliver()
        firing = client.list_alerts(states=["firing"]).items
        acked = client.ack_alert(firing[0].id)
        audit = client.audit(subject=firing[0].id).items
        listed = client.list_webhooks().items
    assert outcome.action == "fire" and [s.outcome for s in sent] == ["delivered"]
    (got,) = hook.got
    assert got.signature_ok and got.json["alert"]["id"] == firing[0].id
    assert (acked.state, acked.acked_by) == ("firing", f"admin:{live.app.app_id}")
    assert [e.action for e in audit] == ["alert.ack", "alert.firing"]
    assert "secret" not in listed[0].model_dump()
    samples = live.scrape()
    labels = frozenset({("app", "shop"), ("model", "digits"), ("severity", "warning")})
    assert samples[("pocketml_alerts_firing", labels)] == 1.0


def test_a_down_receiver_is_retried_then_dead_and_never_blocks_ingestion(live: Live) -> None:
    with live.admin() as client:
        client.add_webhook(closed_port_url())
        client.create_alert_rule("digits", **LATENCY)
        live.send_latencies(400.0)
        live.replica.evaluate()
        first = live.replica.deliver()
        ingested_while_pending = live.send_latencies(20.0)
        later = live.replica.deliver(utcnow() + timedelta(hours=1))
        dead = client.list_deliveries(status="dead").items
    assert [o.outcome for o in first + later] == ["retry", "dead"]
    assert ingested_while_pending == 202
    assert len(dead) == 1 and dead[0].attempts == 2 and dead[0].event == "firing"


def test_the_test_action_delivers_now_and_is_counted_in_metrics(live: Live) -> None:
    with receiver() as hook, live.admin() as client:
        created = client.add_webhook(hook.url, fmt="alertmanager")
        hook.secret = created.secret
        delivery = client.test_webhook(created.id)
        with pytest.raises(NotFound):
            client.test_webhook("0" * 32)
    assert (delivery.status, delivery.event) == ("delivered", "test")
    assert hook.got[0].signature_ok and hook.got[0].json["version"] == "4"
    samples = live.scrape()
    assert (
        samples[("pocketml_alert_webhook_deliveries_total", frozenset({("outcome", "delivered")}))]
        == 1.0
    )


def test_an_invalid_webhook_is_refused_and_another_apps_alerts_are_not_visible(
    live: Live,
) -> None:
    with live.admin() as client:
        with pytest.raises(InvalidInput, match="url must be"):
            client.add_webhook("ftp://example.com/x")
        client.create_alert_rule("digits", **LATENCY)
        live.send_latencies(400.0)
        live.replica.evaluate()
        (alert,) = client.list_alerts().items
    other = live.server.create_app("other")
    with live.server.admin(other.admin_token) as client:
        assert client.list_alerts().items == []
        with pytest.raises(NotFound):
            client.ack_alert(alert.id)
