"""Webhook delivery against real local receivers: signatures, retries with backoff, dead
letters, the three body shapes, the test action and the lease-held delivery loop."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alerts_kit import T0, World, closed_port_url, minutes, receiver

from pocketml.monitor.alerts import (
    EVENT_SCHEMA,
    AlertEvaluator,
    RuleSpec,
    WebhookDeliverer,
    sign,
    verify_signature,
)


def fire_latency_alert(world: World) -> None:
    spec = RuleSpec("latency", "latency_p95_ms", ">", 250.0, window_s=600.0, min_n=100)
    world.service.create_rule(world.app_id, "digits", spec, actor="test")
    world.add_events(T0, latencies=[400.0] * 150)
    world.service.evaluate(T0 + minutes(1))


def test_a_firing_event_arrives_signed_with_the_stable_shape(world: World) -> None:
    with receiver() as hook:
        _, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="test")
        fire_latency_alert(world)
        (outcome,) = world.service.deliver(T0 + minutes(1))
    (got,) = hook.got
    event = got.json
    assert outcome.outcome == "delivered" and got.signature_ok
    assert got.headers["x-pocketml-signature"] == sign(hook.secret, got.body)
    assert got.headers["x-pocketml-event"] == "firing"
    assert got.headers["x-pocketml-timestamp"] == str(int((T0 + minutes(1)).timestamp()))
    assert (event["schema"], event["status"], event["model"], event["version"]) == (
        EVENT_SCHEMA, "firing", "digits", 1,
    )  # fmt: skip
    alert = event["alert"]
    assert set(alert) >= {"id", "rule", "metric", "value", "threshold", "n", "labels",
                          "severity", "starts_at", "ends_at"}  # fmt: skip
    assert (alert["rule"], alert["value"], alert["n"]) == ("latency", 400.0, 150)
    assert alert["starts_at"] == "2026-01-01T00:01:00Z" and alert["ends_at"] is None
    assert event["links"]["alert"] == f"/v1/admin/alerts/{alert['id']}"


def test_a_wrong_secret_does_not_verify() -> None:
    body = b'{"a":1}'
    assert verify_signature("s1", body, sign("s1", body))
    assert not verify_signature("s2", body, sign("s1", body))
    assert not verify_signature("s1", body + b" ", sign("s1", body))
    assert not verify_signature("s1", body, None)


def test_failed_attempts_are_retried_with_backoff_until_the_receiver_accepts(
    world: World,
) -> None:
    with receiver(script=[503, 500]) as hook:
        _, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="test")
        fire_latency_alert(world)
        now = T0 + minutes(1)
        first = world.service.deliver(now)
        (pending,) = world.service.list_deliveries(world.app_id)
        early = world.service.deliver(now)  # the backoff has not elapsed: nothing is due
        second = world.service.deliver(now + minutes(1))
        (after_two,) = world.service.list_deliveries(world.app_id)
        third = world.service.deliver(now + minutes(5))
    assert [o.outcome for o in first + early + second + third] == ["retry", "retry", "delivered"]
    delay_1 = pending.next_attempt_at - now.timestamp()
    delay_2 = after_two.next_attempt_at - (now + minutes(1)).timestamp()
    assert 5.0 <= delay_1 <= 10.0 and 10.0 <= delay_2 <= 20.0  # base 10 s, equal jitter
    assert len({got.headers["x-pocketml-delivery"] for got in hook.got}) == 1
    assert len({got.body for got in hook.got}) == 1 and all(g.signature_ok for g in hook.got)
    (done,) = world.service.list_deliveries(world.app_id)
    assert (done.status, done.attempts, done.last_status) == ("delivered", 3, 200)


def test_a_receiver_that_is_down_ends_dead_in_the_log_after_the_last_attempt(
    world: World,
) -> None:
    world.service.add_webhook(world.app_id, closed_port_url(), actor="test")
    fire_latency_alert(world)
    outcomes = []
    for minute in (1, 2, 4, 8):
        outcomes += world.service.deliver(T0 + minutes(minute))
    (dead,) = world.service.list_deliveries(world.app_id, status="dead")
    assert [o.outcome for o in outcomes] == ["retry", "retry", "dead"]
    assert dead.attempts == 3 and dead.last_status is None
    assert "ConnectError" in (dead.last_error or "")


def test_alertmanager_and_slack_receivers_get_their_own_shapes(world: World) -> None:
    with receiver() as am, receiver() as slack:
        _, am.secret = world.service.add_webhook(
            world.app_id, am.url, fmt="alertmanager", actor="t"
        )
        _, slack.secret = world.service.add_webhook(world.app_id, slack.url, fmt="slack", actor="t")
        fire_latency_alert(world)
        world.service.deliver(T0 + minutes(1))
    body: dict[str, Any] = am.got[0].json
    assert (body["version"], body["status"], len(body["alerts"])) == ("4", "firing", 1)
    labels = body["alerts"][0]["labels"]
    assert (labels["alertname"], labels["model"], labels["severity"]) == (
        "latency", "digits", "warning",
    )  # fmt: skip
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
    text = slack.got[0].json["text"]
    assert text.startswith("[FIRING] digits latency: latency_p95_ms = 400 > 250 (n=150)")
    assert am.got[0].signature_ok and slack.got[0].signature_ok


def test_the_test_action_sends_a_marked_event_at_once(world: World) -> None:
    with receiver() as hook:
        endpoint, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="t")
        delivery = world.service.send_test(world.app_id, endpoint.id)
    assert (delivery.status, delivery.event, delivery.attempts) == ("delivered", "test", 1)
    event = hook.got[0].json
    assert event["test"] is True and hook.got[0].signature_ok


def test_the_secret_is_stored_wrapped_never_in_clear(world: World) -> None:
    endpoint, secret = world.service.add_webhook(world.app_id, "https://h.example/x", actor="t")
    stored = world.service.store.endpoint_secret(world.app_id, endpoint.id)
    assert secret.startswith("whsec_") and secret.encode() not in stored
    assert "secret" not in json.dumps(endpoint.__dict__, default=str)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://h/x",
        "http:///x",
        "not a url",
        "http://h/" + "x" * 2050,
        "http://[::1",  # urlsplit raises ValueError
        "http://h:abc/",  # httpx cannot send to it
        "http://" + "a" * 64 + ".example/",  # a host label over 63 characters
    ],
)
def test_an_invalid_webhook_url_is_refused(world: World, url: str) -> None:
    from pocketml.errors import InvalidInput

    with pytest.raises(InvalidInput, match="url must be"):
        world.service.add_webhook(world.app_id, url, actor="t")


def test_one_replica_at_a_time_evaluates_and_delivers(world: World) -> None:
    with receiver() as hook:
        _, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="t")
        spec = RuleSpec("latency", "latency_p95_ms", ">", 250.0, window_s=600.0, min_n=100)
        world.service.create_rule(world.app_id, "digits", spec, actor="test")
        world.add_events(T0, latencies=[400.0] * 150)
        now = T0 + minutes(1)
        a, b = (AlertEvaluator(world.service, owner=o) for o in ("a", "b"))
        evaluated = a.run_once(now)
        assert evaluated is not None and [o.action for o in evaluated] == ["fire"]
        assert b.run_once(now) is None
        send_a, send_b = (WebhookDeliverer(world.service, owner=o) for o in ("a", "b"))
        sent = send_a.run_once(now)
        assert sent is not None and [o.outcome for o in sent] == ["delivered"]
        assert send_b.run_once(now) == []  # nothing due: no lease taken, no write
    assert len(hook.got) == 1


def test_the_verification_snippet_in_the_docs_accepts_a_real_signature() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text()
    section = doc.split("### Verifying a delivery", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # the receiver's code, exactly as documented
    body = b'{"schema":"pocketml.alert.v1"}'
    assert namespace["verify"]("whsec_x", body, sign("whsec_x", body))
    assert not namespace["verify"]("whsec_y", body, sign("whsec_x", body))


def test_an_idle_server_takes_no_lease_and_a_loop_gives_its_lease_back(world: World) -> None:
    evaluator = AlertEvaluator(world.service, owner="a")
    assert evaluator.run_once(T0) == [] and evaluator.lease.holder() is None
    spec = RuleSpec("latency", "latency_p95_ms", ">", 250.0, window_s=600.0, min_n=100)
    world.service.create_rule(world.app_id, "digits", spec, actor="test")
    asyncio.run(evaluator.run_forever(asyncio.Event(), max_passes=1))
    holder = evaluator.lease.holder()
    assert holder is not None and (holder.owner, holder.expires_at) == ("a", 0.0)


def test_a_resolved_event_never_overtakes_the_firing_one_being_retried(world: World) -> None:
    with receiver(script=[503, 503]) as hook:
        _, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="test")
        fire_latency_alert(world)  # fires at T0 + 1 min
        first = world.service.deliver(T0 + minutes(1))  # firing: 503
        world.add_events(T0 + minutes(12), latencies=[20.0] * 150)
        world.service.evaluate(T0 + minutes(13))  # resolved, due at once
        second = world.service.deliver(T0 + minutes(13))  # firing again: 503
        held = world.service.deliver(T0 + minutes(13) + timedelta(seconds=1))
        third = world.service.deliver(T0 + minutes(20))  # firing: 200
        fourth = world.service.deliver(T0 + minutes(20))  # only now the resolved one
    outcomes = [[o.outcome for o in p] for p in (first, second, held, third, fourth)]
    assert outcomes == [["retry"], ["retry"], [], ["delivered"], ["delivered"]]
    events = [got.headers["x-pocketml-event"] for got in hook.got]
    assert events == ["firing", "firing", "firing", "resolved"]


def test_a_delivery_pass_stops_when_told_to_and_leaves_the_rest_pending(world: World) -> None:
    with receiver() as hook:
        _, hook.secret = world.service.add_webhook(world.app_id, hook.url, actor="test")
        world.service.add_webhook(world.app_id, hook.url, fmt="slack", actor="test")
        fire_latency_alert(world)
        answers = iter([True, False])
        sent = world.service.deliver(T0 + minutes(1), keep_going=lambda: next(answers))
        rest = world.service.deliver(T0 + minutes(1))
    assert [o.outcome for o in sent] == ["delivered"] and [o.outcome for o in rest] == ["delivered"]
    assert len(hook.got) == 2


@pytest.mark.parametrize("url", ["http://h:abc/", "http://" + "a" * 64 + ".example/"])
def test_a_url_httpx_cannot_send_to_is_a_failed_attempt_not_an_exception(url: str) -> None:
    # A stored URL that fails to parse must not raise out of the sender: that stopped the
    # outbox pass for every app (the row came first again on every pass).
    import httpx

    from pocketml.monitor.alerts import post_event

    with httpx.Client(timeout=1.0) as client:
        result = post_event(
            client, url, b"{}", secret="whsec_x", delivery_id="d1", event="test", timestamp=0.0
        )
    assert result.ok is False and result.error is not None
