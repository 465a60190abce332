"""The evaluation pass: every rule's readings through the state machine, into the store.

For each rule: read its metric (``MetricSources``), keep the readings in its scope, and
per label set (fingerprint) ask ``next_step`` what to do with the stored episode. A change
becomes one ``Transition`` (the alert row, one outbox row per receiver unless the episode
is acknowledged, the audit entry) written in one transaction; an unchanged episode only
gets its latest value. A value that is not finite counts as no value.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pocketml.errors import NotFound, PocketMLError
from pocketml.monitor.alerts._event import alert_event, fingerprint
from pocketml.monitor.alerts._machine import Current, Step, next_step
from pocketml.monitor.alerts._outbox import outbox_row
from pocketml.monitor.alerts._rules import AlertRule
from pocketml.monitor.alerts._sources import MetricReading, MetricSources
from pocketml.monitor.alerts._store import AlertStore, Transition, audit_entry
from pocketml.monitor.alerts._types import Alert, WebhookEndpoint

__all__ = ["EvaluationOutcome", "evaluate_rules"]

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


def _in_scope(scope: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in scope.items())


def evaluate_rules(
    store: AlertStore, sources: MetricSources, now: datetime, *, base_url: str = ""
) -> list[EvaluationOutcome]:
    """One pass over every rule of every app (see ``AlertService.evaluate``).

    A rule whose metric has no source, or whose source fails, is reported and skipped;
    the others go on.
    """
    outcomes: list[EvaluationOutcome] = []
    endpoints: dict[str, list[WebhookEndpoint]] = {}
    for rule in store.list_rules(None):
        try:
            readings = sources.read(
                rule.metric, rule.app_id, rule.model, rule.window_s, now.timestamp()
            )
        except NotFound as exc:
            outcomes.append(EvaluationOutcome(rule.id, {}, "no_source", str(exc)))
            continue
        except PocketMLError as exc:
            logger.warning("alert rule %s: reading %s failed: %s", rule.id, rule.metric, exc)
            outcomes.append(EvaluationOutcome(rule.id, {}, "error", str(exc)))
            continue
        if rule.app_id not in endpoints:
            endpoints[rule.app_id] = store.list_endpoints(rule.app_id)
        active = store.active_alerts(rule.id)
        resolved = store.last_resolved(rule.id)
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
            step = next_step(current, rule, reading, now)
            outcomes.append(
                _apply(store, base_url, rule, alert, fp, reading, step, now, endpoints[rule.app_id])
            )
    return outcomes


def _apply(
    store: AlertStore,
    base_url: str,
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
            store.touch(alert.id, latest)
        return EvaluationOutcome(
            rule.id, dict(reading.labels), "none", step.reason, alert.id if alert else None
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
        event = alert_event(after, state, base_url=base_url, at=now)
        events = [outbox_row(endpoint, event, alert_id, now) for endpoint in endpoints]
    entry = audit_entry(
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
    if not store.apply(transition, rule.app_id):
        return EvaluationOutcome(
            rule.id, dict(reading.labels), "skipped", "changed by another writer"
        )
    logger.info("alert %s (%s %s): %s", alert_id, rule.model, rule.name, state)
    return EvaluationOutcome(rule.id, dict(reading.labels), step.action, step.reason, alert_id)


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
