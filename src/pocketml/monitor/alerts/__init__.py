"""pocketml.monitor.alerts: alert rules, states, and signed webhooks that are never lost.

Operators declare rules per model (``RuleSpec``: metric, comparison, threshold, window,
minimum n, severity, for-duration, cool-down, scope); ``default_rules()`` is the starter
set. ``AlertService.evaluate`` reads each rule's metric from ``MetricSources`` (the
telemetry readers of ``telemetry_sources``; the drift readers the server registers) and
moves each alert through the pure state machine (``next_step``: inactive -> pending ->
firing -> resolved, de-duplicated by fingerprint, with a cool-down); every transition is
one transaction with its outbox rows and audit entry. ``AlertService.deliver`` sends the
outbox as ``pocketml.alert.v1`` events (or Alertmanager / Slack bodies), HMAC-signed,
retried with backoff and jitter, ``dead`` after the last attempt. ``AlertEvaluator`` and
``WebhookDeliverer`` run the two passes in the server, each under its own lease.
See docs/alerts.md.
"""

from pocketml.monitor.alerts._delivery import AttemptResult, Backoff, post_event
from pocketml.monitor.alerts._event import (
    EVENT_SCHEMA,
    FORMATS,
    SIGNATURE_HEADER,
    alert_event,
    fingerprint,
    render,
    sign,
    verify_signature,
)
from pocketml.monitor.alerts._loops import AlertEvaluator, WebhookDeliverer
from pocketml.monitor.alerts._machine import ACTIONS, Current, Step, judge, next_step
from pocketml.monitor.alerts._rules import (
    COMPARISONS,
    KNOWN_METRICS,
    SCOPE_LABELS,
    SEVERITIES,
    AlertRule,
    RuleSpec,
    compare,
    default_rules,
    validate_rule,
)
from pocketml.monitor.alerts._sources import (
    MetricReader,
    MetricReading,
    MetricSources,
    TelemetryMetrics,
    telemetry_sources,
)
from pocketml.monitor.alerts._types import (
    ALERT_STATES,
    DELIVERY_STATUSES,
    Alert,
    Delivery,
    WebhookEndpoint,
)
from pocketml.monitor.alerts.service import (
    AlertService,
    DeliveryOutcome,
    EvaluationOutcome,
    check_webhook_url,
)

__all__ = [
    "ACTIONS",
    "ALERT_STATES",
    "COMPARISONS",
    "DELIVERY_STATUSES",
    "EVENT_SCHEMA",
    "FORMATS",
    "KNOWN_METRICS",
    "SCOPE_LABELS",
    "SEVERITIES",
    "SIGNATURE_HEADER",
    "Alert",
    "AlertEvaluator",
    "AlertRule",
    "AlertService",
    "AttemptResult",
    "Backoff",
    "Current",
    "Delivery",
    "DeliveryOutcome",
    "EvaluationOutcome",
    "MetricReader",
    "MetricReading",
    "MetricSources",
    "RuleSpec",
    "Step",
    "TelemetryMetrics",
    "WebhookDeliverer",
    "WebhookEndpoint",
    "alert_event",
    "check_webhook_url",
    "compare",
    "default_rules",
    "fingerprint",
    "judge",
    "next_step",
    "post_event",
    "render",
    "sign",
    "telemetry_sources",
    "validate_rule",
    "verify_signature",
]
