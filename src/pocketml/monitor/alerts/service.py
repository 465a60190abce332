"""``AlertService``: rules, the evaluation pass, acknowledgements, webhooks, deliveries.

Two passes, run by two separate loops (``_loops.py``) so a slow or dead receiver never
delays evaluation, and neither ever touches telemetry intake:

- ``evaluate(now)`` reads every rule's metric from ``MetricSources``, runs the state
  machine per label set, and writes each transition with its outbox rows and audit entry
  in one transaction (``_evaluate.py``);
- ``deliver(now)`` sends the outbox rows whose time has come (``_delivery.py``).

Webhook secrets are generated here, shown once (``add_webhook``'s return) and stored
wrapped by the server's master key (AES-256-GCM, label ``webhook:<id>``), like the apps'
signing keys; no read path returns them.
"""

from __future__ import annotations

import logging
import random
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from pocketml.db import utcnow
from pocketml.errors import InvalidInput
from pocketml.limits import check_text
from pocketml.monitor.alerts._delivery import Backoff, DeliveryOutcome, deliver_due
from pocketml.monitor.alerts._evaluate import EvaluationOutcome, evaluate_rules
from pocketml.monitor.alerts._event import FORMATS, alert_event
from pocketml.monitor.alerts._outbox import OutboxStore, outbox_row
from pocketml.monitor.alerts._rules import (
    KNOWN_METRICS,
    AlertRule,
    RuleSpec,
    default_rules,
    validate_rule,
)
from pocketml.monitor.alerts._sources import MetricSources
from pocketml.monitor.alerts._store import AlertStore, audit_entry
from pocketml.monitor.alerts._types import Alert, Delivery, WebhookEndpoint
from pocketml.registry import Registry

__all__ = ["AlertService", "DeliveryOutcome", "EvaluationOutcome", "check_webhook_url"]

logger = logging.getLogger(__name__)


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host, at most 2048 characters, that httpx can send to (the
    sender parses it the same way, so a stored URL never fails there). Raises InvalidInput."""
    scheme, host = "", None
    try:
        if isinstance(url, str):
            parts = urlsplit(check_text(url))
            scheme, host = parts.scheme, parts.hostname
            httpx.URL(url)
            if host:
                host.encode("idna")  # what the sender does: labels of 1-63 characters
    except (ValueError, httpx.InvalidURL, UnicodeError):  # e.g. "http://[::1", "http://h:abc/"
        host = None
    if scheme not in {"http", "https"} or not host or len(url) > 2048:
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
        self._outbox: OutboxStore | None = None

    @property
    def store(self) -> AlertStore:
        """The alert tables (on the registry's engine, which must be open)."""
        if self._store is None:
            self._store = AlertStore(self.registry.store.engine)
        return self._store

    @property
    def outbox(self) -> OutboxStore:
        """The webhook outbox and delivery log (same engine)."""
        if self._outbox is None:
            self._outbox = OutboxStore(self.registry.store.engine)
        return self._outbox

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
        entry = audit_entry(
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
        entry = audit_entry(
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
        entry = audit_entry(
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
        """One pass over every rule of every app (``_evaluate.py``).

        A rule whose metric has no source, or whose source fails, is reported and skipped;
        the others go on.
        """
        return evaluate_rules(self.store, self.sources, now or utcnow(), base_url=self.base_url)

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
        entry = audit_entry(
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
        entry = audit_entry(
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
        row = outbox_row(endpoint, event, None, moment, kind="test")
        self.outbox.enqueue(app_id, row)
        self.deliver(moment, only=row["delivery_id"])
        return self.outbox.get_delivery(app_id, row["delivery_id"])

    def deliver(
        self,
        now: datetime | None = None,
        *,
        limit: int = 100,
        only: str | None = None,
        keep_going: Callable[[], bool] | None = None,
    ) -> list[DeliveryOutcome]:
        """Send the outbox rows whose time has come, one attempt each (``deliver_due``)."""
        return deliver_due(
            self.outbox,
            self.registry.master_key,
            now or utcnow(),
            backoff=self.backoff,
            rng=self.rng,
            timeout_s=self.timeout_s,
            on_outcome=self.on_outcome,
            limit=limit,
            only=only,
            keep_going=keep_going,
        )

    def list_deliveries(
        self, app_id: str, *, status: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """The delivery log, newest first (``status``: pending, delivered or dead)."""
        return self.outbox.list_deliveries(app_id, status=status, limit=limit)

    # ---------------------------------------------------------------- deliver
