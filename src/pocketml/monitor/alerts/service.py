"""``AlertService``: rules, the evaluation pass, acknowledgements, webhooks, deliveries.

Two passes, run by two separate loops (``_loops.py``) so a slow or dead receiver never
delays evaluation, and neither ever touches telemetry intake:

- ``evaluate(now)`` reads every rule's metric from ``MetricSources``, runs the state
  machine per label set, and writes each transition with its outbox rows and audit entry
  in one transaction;
- ``deliver(now)`` sends the outbox rows whose time has come (``_delivery.py``).

Webhook secrets are generated here, shown once (``add_webhook``'s return) and stored
wrapped by the server's master key (AES-256-GCM, label ``webhook:<id>``), like the apps'
signing keys; no read path returns them.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from pocketml.db import utcnow
from pocketml.errors import InvalidInput, NotFound, PocketMLError
from pocketml.limits import check_text
from pocketml.monitor.alerts._delivery import Backoff, post_event
from pocketml.monitor.alerts._event import FORMATS, alert_event, fingerprint, render
from pocketml.monitor.alerts._machine import Current, Step, next_step
from pocketml.monitor.alerts._rules import (
    KNOWN_METRICS,
    AlertRule,
    RuleSpec,
    default_rules,
    validate_rule,
)
from pocketml.monitor.alerts._sources import MetricReading, MetricSources
from pocketml.monitor.alerts._store import AlertStore, Transition
from pocketml.monitor.alerts._types import Alert, Delivery, WebhookEndpoint
from pocketml.registry import Registry

__all__ = ["AlertService", "DeliveryOutcome", "EvaluationOutcome"]

logger = logging.getLogger(__name__)

_STATE_AFTER = {"pend": "pending", "fire": "firing", "resolve": "resolved", "cancel": "inactive"}


@dataclass(frozen=True)
class EvaluationOutcome:
    """What one pass did for one rule and label set (``action`` from ``ACTIONS``, or
    ``no_source``/``error`` for a rule that could not be read)."""

    rule_id: str
    labels: dict[str, str]
    action: str
    reason: str
    alert_id: str | None = None


@dataclass(frozen=True)
class DeliveryOutcome:
    """One attempt: ``delivered``, ``retry`` (scheduled again) or ``dead``."""

    delivery_id: str
    outcome: str
    status: int | None
    error: str | None


def _audit(
    app_id: str,
    subject: str,
    action: str,
    at: datetime,
    *,
    actor: str,
    reason: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "subject": subject,
        "action": action,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "reason": reason,
        "details": details or {},
        "at": at,
    }


def _in_scope(scope: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in scope.items())


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host, at most 2048 characters. Raises InvalidInput."""
    parts = urlsplit(check_text(url)) if isinstance(url, str) else None
    if (
        parts is None
        or parts.scheme not in {"http", "https"}
        or not parts.hostname
        or len(url) > 2048
    ):
        raise InvalidInput(
            f"url must be an http:// or https:// URL with a host (at most 2048 characters); "
            f"got {url!r}. Example: https://hooks.example.com/pocketml"
        )
    return url


class AlertService:
    """Alert rules, states and webhook delivery on the registry's database.

    Args:
        registry: the open registry (its engine holds the tables, its master key wraps
            the webhook secrets).
        sources: the metric readers (``telemetry_sources`` plus whatever the server adds).
        base_url: the server's public URL for the links in events ("" = relative).
        backoff: the delivery retry schedule.
        timeout_s: seconds one POST may take (connect and read).
        rng: the jitter's random source (tests pass a seeded one).
        on_outcome: called with each delivery outcome (the Prometheus counter).
    """

    def __init__(
        self,
        registry: Registry,
        sources: MetricSources,
        *,
        base_url: str = "",
        backoff: Backoff | None = None,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.registry = registry
        self.sources = sources
        self.base_url = base_url
        self.backoff = backoff or Backoff()
        self.timeout_s = timeout_s
        self.rng = rng or random.Random()
        self.on_outcome = on_outcome
        self._store: AlertStore | None = None

    @property
    def store(self) -> AlertStore:
        """The alert tables (on the registry's engine, which must be open)."""
        if self._store is None:
            self._store = AlertStore(self.registry.store.engine)
        return self._store

    def metrics(self) -> list[str]:
        """Metric names a rule may use: the known ones and any registered source."""
        return sorted(set(KNOWN_METRICS) | set(self.sources.names()))

    # ------------------------------------------------------------------ rules

    def create_rule(self, app_id: str, model: str, spec: RuleSpec, *, actor: str) -> AlertRule:
        """Store a validated rule of ``model``.

        Raises:
            InvalidInput: a field is out of its contract (named).
            NotFound: no such model. Conflict: the model has a rule of that name.
        """
        rule = validate_rule(spec, self.metrics())
        info = self.registry.get_model(app_id, model)
        now = utcnow()
        rule_id = uuid.uuid4().hex
        values = {
            "id": rule_id,
            "app_id": app_id,
            "model_id": info.id,
            "model": model,
            "name": rule.name,
            "metric": rule.metric,
            "comparison": rule.comparison,
            "threshold": rule.threshold,
            "window_s": rule.window_s,
            "min_n": rule.min_n,
            "severity": rule.severity,
            "for_s": rule.for_s,
            "cooldown_s": rule.cooldown_s,
            "scope": rule.scope,
            "created_by": actor,
            "created_at": now,
        }
        entry = _audit(
            app_id,
            rule_id,
            "alert_rule.create",
            now,
            actor=actor,
            to_state="active",
            reason=f"{model}: {rule.name}",
            details={"rule": {**values, "created_at": now.isoformat()}},
        )
        return self.store.insert_rule(values, entry)

    def create_default_rules(self, app_id: str, model: str, *, actor: str) -> list[AlertRule]:
        """Create the default rules ``model`` does not have yet (by name); returns them."""
        info = self.registry.get_model(app_id, model)
        taken = self.store.rule_names(info.id)
        return [
            self.create_rule(app_id, model, spec, actor=actor)
            for spec in default_rules()
            if spec.name not in taken
        ]

    def list_rules(self, app_id: str, model: str | None = None) -> list[AlertRule]:
        """The app's rules (of one model when given)."""
        return self.store.list_rules(app_id, model)

    def get_rule(self, app_id: str, rule_id: str) -> AlertRule:
        """One rule. Raises NotFound."""
        return self.store.get_rule(app_id, rule_id)

    def delete_rule(self, app_id: str, rule_id: str, *, actor: str) -> None:
        """Delete a rule and its alerts (audited). Raises NotFound."""
        rule = self.store.get_rule(app_id, rule_id)
        entry = _audit(
            app_id,
            rule_id,
            "alert_rule.delete",
            utcnow(),
            actor=actor,
            from_state="active",
            reason=f"{rule.model}: {rule.name}",
        )
        self.store.delete_rule(app_id, rule_id, entry)

    # ------------------------------------------------------------------ alerts

    def list_alerts(
        self,
        app_id: str,
        *,
        states: list[str] | None = None,
        model: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """The app's alert episodes, newest first."""
        return self.store.list_alerts(app_id, states=states, model=model, limit=limit)

    def get_alert(self, app_id: str, alert_id: str) -> Alert:
        """One alert episode. Raises NotFound."""
        return self.store.get_alert(app_id, alert_id)

    def ack(self, app_id: str, alert_id: str, *, actor: str, now: datetime | None = None) -> Alert:
        """Acknowledge: no more notifications for this episode; its state goes on."""
        moment = now or utcnow()
        entry = _audit(
            app_id,
            alert_id,
            "alert.ack",
            moment,
            actor=actor,
            reason="acknowledged: notifications of this episode are silenced",
        )
        return self.store.ack(app_id, alert_id, moment, actor, entry)

    def list_rules_exist(self) -> bool:
        """True when any app has a rule (an idle server's evaluator then stops at one read)."""
        return self.store.has_rules()

    def firing_counts(self) -> list[tuple[str, str, str, int]]:
        """(app id, model, severity, firing alerts), for the Prometheus gauge."""
        return self.store.firing_counts()

    # --------------------------------------------------------------- evaluate

    def evaluate(self, now: datetime | None = None) -> list[EvaluationOutcome]:
        """One pass over every rule of every app (see the module docstring).

        A rule whose metric has no source, or whose source fails, is reported and skipped;
        the others go on.
        """
        moment = now or utcnow()
        outcomes: list[EvaluationOutcome] = []
        endpoints: dict[str, list[WebhookEndpoint]] = {}
        for rule in self.store.list_rules(None):
            try:
                readings = self.sources.read(
                    rule.metric, rule.app_id, rule.model, rule.window_s, moment.timestamp()
                )
            except NotFound as exc:
                outcomes.append(EvaluationOutcome(rule.id, {}, "no_source", str(exc)))
                continue
            except PocketMLError as exc:
                logger.warning("alert rule %s: reading %s failed: %s", rule.id, rule.metric, exc)
                outcomes.append(EvaluationOutcome(rule.id, {}, "error", str(exc)))
                continue
            if rule.app_id not in endpoints:
                endpoints[rule.app_id] = self.store.list_endpoints(rule.app_id)
            active = self.store.active_alerts(rule.id)
            resolved = self.store.last_resolved(rule.id)
            for reading in readings:
                if not _in_scope(rule.scope, reading.labels):
                    continue
                if reading.value is not None and not math.isfinite(reading.value):
                    reading = replace(reading, value=None)
                fp = fingerprint(rule.id, reading.labels)
                alert = active.get(fp)
                current = Current(
                    alert.state if alert is not None else "inactive",
                    alert.pending_since if alert is not None else None,
                    resolved.get(fp),
                )
                step = next_step(current, rule, reading, moment)
                outcomes.append(
                    self._apply(rule, alert, fp, reading, step, moment, endpoints[rule.app_id])
                )
        return outcomes

    def _apply(
        self,
        rule: AlertRule,
        alert: Alert | None,
        fp: str,
        reading: MetricReading,
        step: Step,
        now: datetime,
        endpoints: list[WebhookEndpoint],
    ) -> EvaluationOutcome:
        latest = {"value": reading.value, "n": reading.n, "evaluated_at": now}
        if step.action == "none":
            if alert is not None:
                self.store.touch(alert.id, latest)
            return EvaluationOutcome(
                rule.id, reading.labels, "none", step.reason, alert.id if alert else None
            )
        state = _STATE_AFTER[step.action]
        values: dict[str, Any] = {**latest, "state": state}
        if step.action == "fire":
            values["starts_at"] = now
        if step.action in ("resolve", "cancel"):
            values.update(active_key=None, ends_at=now if step.action == "resolve" else None)
        if alert is None:
            alert_id = uuid.uuid4().hex
            values.update(
                app_id=rule.app_id,
                rule_id=rule.id,
                model=rule.model,
                fingerprint=fp,
                active_key=fp,
                labels=reading.labels,
                pending_since=now,
                starts_at=values.get("starts_at"),
                ends_at=None,
                acked_at=None,
                acked_by=None,
            )
            after = _alert_of(rule, alert_id, values)
        else:
            alert_id = alert.id
            after = replace(alert, **{k: v for k, v in values.items() if k != "active_key"})
        events = []
        if state in ("firing", "resolved") and after.acked_at is None:
            event = alert_event(after, state, base_url=self.base_url, at=now)
            events = [_outbox_row(endpoint, event, alert_id, now) for endpoint in endpoints]
        entry = _audit(
            rule.app_id,
            alert_id,
            f"alert.{state}",
            now,
            actor="alert-evaluator",
            from_state=alert.state if alert is not None else "inactive",
            to_state=state,
            reason=f"{rule.name}: {step.reason}",
            details={
                "rule_id": rule.id,
                "labels": reading.labels,
                "value": reading.value,
                "n": reading.n,
                "notified": len(events),
            },
        )
        transition = Transition(
            alert_id,
            values,
            insert=alert is None,
            expected_state=alert.state if alert is not None else None,
            audit=entry,
            events=events,
        )
        if not self.store.apply(transition, rule.app_id):
            return EvaluationOutcome(
                rule.id, reading.labels, "skipped", "changed by another writer"
            )
        logger.info("alert %s (%s %s): %s", alert_id, rule.model, rule.name, state)
        return EvaluationOutcome(rule.id, reading.labels, step.action, step.reason, alert_id)

    # --------------------------------------------------------------- webhooks

    def add_webhook(
        self, app_id: str, url: str, *, fmt: str = "pocketml", actor: str
    ) -> tuple[WebhookEndpoint, str]:
        """Register a receiver; returns it and its secret (shown this once only).

        Raises:
            InvalidInput: the URL or the format is not valid.
        """
        check_webhook_url(url)
        if fmt not in FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
        endpoint_id = uuid.uuid4().hex
        secret = "whsec_" + secrets.token_urlsafe(32)
        wrapped = self.registry.master_key.wrap(secret.encode("utf-8"), f"webhook:{endpoint_id}")
        now = utcnow()
        values = {
            "id": endpoint_id,
            "app_id": app_id,
            "url": url,
            "format": fmt,
            "secret": wrapped,
            "created_by": actor,
            "created_at": now,
        }
        entry = _audit(
            app_id,
            endpoint_id,
            "webhook.create",
            now,
            actor=actor,
            to_state="active",
            reason=f"{fmt} receiver {url}",
        )
        return self.store.insert_endpoint(values, entry), secret

    def list_webhooks(self, app_id: str) -> list[WebhookEndpoint]:
        """The app's receivers (never their secrets)."""
        return self.store.list_endpoints(app_id)

    def delete_webhook(self, app_id: str, endpoint_id: str, *, actor: str) -> None:
        """Remove a receiver and its delivery log (audited). Raises NotFound."""
        entry = _audit(
            app_id, endpoint_id, "webhook.delete", utcnow(), actor=actor, from_state="active"
        )
        self.store.delete_endpoint(app_id, endpoint_id, entry)

    def send_test(self, app_id: str, endpoint_id: str, *, now: datetime | None = None) -> Delivery:
        """Queue a test event (``"test": true``) for one receiver and try it at once.

        Returns the delivery after its first attempt; a failed one is retried like any.
        """
        moment = now or utcnow()
        endpoint = self.store.get_endpoint(app_id, endpoint_id)
        sample = Alert(
            id="test-" + uuid.uuid4().hex[:16],
            app_id=app_id,
            rule_id="test",
            rule="pocketml-test",
            model="(test)",
            fingerprint="0" * 64,
            labels={"version": "", "device_class": "test"},
            state="firing",
            metric="latency_p95_ms",
            comparison=">",
            threshold=250.0,
            severity="info",
            value=0.0,
            n=0,
            pending_since=moment,
            starts_at=moment,
            ends_at=None,
            evaluated_at=moment,
            acked_at=None,
            acked_by=None,
        )
        event = alert_event(sample, "firing", base_url=self.base_url, at=moment, test=True)
        row = _outbox_row(endpoint, event, None, moment, kind="test")
        self.store.enqueue(app_id, row)
        self.deliver(moment, only=row["delivery_id"])
        return self.store.get_delivery(app_id, row["delivery_id"])

    def list_deliveries(
        self, app_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The delivery log, newest first (``status``: pending, delivered or dead)."""
        return self.store.list_deliveries(app_id, status=status, limit=limit)

    # ---------------------------------------------------------------- deliver

    def deliver(
        self,
        now: datetime | None = None,
        *,
        limit: int = 100,
        only: str | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> list[DeliveryOutcome]:
        """Send the outbox rows whose time has come (at most ``limit``), one attempt each.

        Args:
            now: the clock of this pass.
            limit: rows per pass.
            only: just this delivery id.
            keep_going: asked before each attempt (the loop renews its lease there); the
                pass ends when it answers False, the rest waits for the next pass.
        """
        moment = now or utcnow()
        ts = moment.timestamp()
        due = self.store.due(ts, limit, only=only)
        outcomes = []
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            for delivery, body, wrapped, _fmt, _app in due:
                if keep_going is not None and not keep_going():
                    break
                outcomes.append(self._attempt(client, delivery, body, wrapped, moment))
        return outcomes

    def _attempt(
        self, client: httpx.Client, delivery: Delivery, body: str, wrapped: bytes, now: datetime
    ) -> DeliveryOutcome:
        secret = self.registry.master_key.unwrap(wrapped, f"webhook:{delivery.endpoint_id}")
        result = post_event(
            client,
            delivery.url,
            body.encode("utf-8"),
            secret=secret.decode("utf-8"),
            delivery_id=delivery.id,
            event=delivery.event,
            timestamp=now.timestamp(),
        )
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status": result.status,
            "last_error": result.error,
        }
        if result.ok:
            outcome = "delivered"
            values.update(status="delivered", finished_at=now)
        elif attempts >= self.backoff.max_attempts:
            outcome = "dead"
            values.update(status="dead", finished_at=now)
            logger.warning(
                "webhook delivery %s to %s is dead after %d attempts: %s",
                delivery.id,
                delivery.url,
                attempts,
                result.error,
            )
        else:
            outcome = "retry"
            values["next_attempt_at"] = now.timestamp() + self.backoff.delay(attempts, self.rng)
        if not self.store.record_attempt(delivery, values):
            return DeliveryOutcome(delivery.id, "skipped", result.status, result.error)
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        return DeliveryOutcome(delivery.id, outcome, result.status, result.error)


def _alert_of(rule: AlertRule, alert_id: str, values: dict[str, Any]) -> Alert:
    return Alert(
        id=alert_id,
        app_id=rule.app_id,
        rule_id=rule.id,
        rule=rule.name,
        model=rule.model,
        fingerprint=values["fingerprint"],
        labels=dict(values["labels"]),
        state=values["state"],
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        severity=rule.severity,
        value=values["value"],
        n=values["n"],
        pending_since=values["pending_since"],
        starts_at=values["starts_at"],
        ends_at=values["ends_at"],
        evaluated_at=values["evaluated_at"],
        acked_at=None,
        acked_by=None,
    )


def _outbox_row(
    endpoint: WebhookEndpoint,
    event: dict[str, Any],
    alert_id: str | None,
    now: datetime,
    *,
    kind: str | None = None,
) -> dict[str, Any]:
    return {
        "delivery_id": uuid.uuid4().hex,
        "endpoint_id": endpoint.id,
        "alert_id": alert_id,
        "event": kind or event["status"],
        "body": render(event, endpoint.format),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now.timestamp(),
        "last_status": None,
        "last_error": None,
        "created_at": now,
        "finished_at": None,
    }
