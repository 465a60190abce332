"""The webhook event: one stable, versioned shape, three renderings, one signature.

``alert_event(alert, status, links)`` is the event, ``schema = "pocketml.alert.v1"``
(fields only ever added within v1; a rename or removal is v2). The retraining loop
consumes the same dict as its trigger. ``render(event, fmt)`` gives the bytes a receiver
gets:

- ``pocketml``: the event itself;
- ``alertmanager``: Alertmanager's webhook body (``version: "4"``, ``alerts: [...]``) so a
  receiver written for Alertmanager (PagerDuty bridges, ``alertmanager-webhook-*``
  adapters) takes it unchanged;
- ``slack``: ``{"text": ...}`` for a Slack/Mattermost/Teams incoming webhook.

``sign(secret, body)`` is ``sha256=<hex HMAC-SHA256 of the raw body>`` (the
``X-PocketML-Signature`` header); ``verify_signature`` is what a receiver runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pocketml.monitor.alerts._types import Alert

__all__ = [
    "EVENT_SCHEMA",
    "FORMATS",
    "SIGNATURE_HEADER",
    "alert_event",
    "fingerprint",
    "render",
    "sign",
    "verify_signature",
]

EVENT_SCHEMA = "pocketml.alert.v1"
FORMATS = ("pocketml", "alertmanager", "slack")
SIGNATURE_HEADER = "X-PocketML-Signature"
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended"


def fingerprint(rule_id: str, labels: Mapping[str, str]) -> str:
    """The de-duplication key of an alert: sha256 of the rule id and its sorted labels."""
    canonical = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def alert_event(
    alert: Alert, status: str, *, base_url: str = "", at: datetime, test: bool = False
) -> dict[str, Any]:
    """The ``pocketml.alert.v1`` event of ``alert`` changing to ``status``.

    Args:
        alert: the episode after the change.
        status: ``firing`` or ``resolved``.
        base_url: the server's public URL for the links ("" = relative links).
        at: when the change happened.
        test: True for the "send test" action's event (receivers should not page).
    """
    admin = f"{base_url}/v1/admin"
    return {
        "schema": EVENT_SCHEMA,
        "status": status,
        "test": test,
        "at": _iso(at),
        "app_id": alert.app_id,
        "model": alert.model,
        "version": alert.version,
        "alert": {
            "id": alert.id,
            "rule": alert.rule,
            "rule_id": alert.rule_id,
            "fingerprint": alert.fingerprint,
            "metric": alert.metric,
            "comparison": alert.comparison,
            "value": alert.value,
            "threshold": alert.threshold,
            "n": alert.n,
            "labels": dict(alert.labels),
            "severity": alert.severity,
            "starts_at": _iso(alert.starts_at),
            "ends_at": _iso(alert.ends_at),
        },
        "links": {
            "alert": f"{admin}/alerts/{alert.id}",
            "rule": f"{admin}/alerts/rules/{alert.rule_id}",
            "model": f"{admin}/models/{alert.model}",
        },
    }


def _summary(event: dict[str, Any]) -> str:
    alert = event["alert"]
    value = "none" if alert["value"] is None else f"{alert['value']:.4g}"
    labels = " ".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
    return (
        f"{event['model']} {alert['rule']}: {alert['metric']} = {value} "
        f"{alert['comparison']} {alert['threshold']:g} (n={alert['n']}) {labels}".rstrip()
    )


def _alertmanager(event: dict[str, Any]) -> dict[str, Any]:
    alert = event["alert"]
    labels = {
        "alertname": alert["rule"],
        "model": event["model"],
        "metric": alert["metric"],
        "severity": alert["severity"],
        **alert["labels"],
    }
    annotations = {"summary": _summary(event), "value": str(alert["value"])}
    return {
        "version": "4",
        "groupKey": f"pocketml/{alert['fingerprint']}",
        "truncatedAlerts": 0,
        "status": event["status"],
        "receiver": "pocketml",
        "groupLabels": {"alertname": alert["rule"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": event["links"]["alert"].rsplit("/v1/", 1)[0],
        "alerts": [
            {
                "status": event["status"],
                "labels": labels,
                "annotations": annotations,
                "startsAt": alert["starts_at"] or event["at"],
                "endsAt": alert["ends_at"] or _ZERO_TIME,
                "generatorURL": event["links"]["alert"],
                "fingerprint": alert["fingerprint"][:16],
            }
        ],
    }


def render(event: dict[str, Any], fmt: str) -> str:
    """The body a receiver of format ``fmt`` gets (compact JSON, keys in a fixed order)."""
    if fmt == "alertmanager":
        body: dict[str, Any] = _alertmanager(event)
    elif fmt == "slack":
        test = "[TEST] " if event["test"] else ""
        body = {"text": f"{test}[{event['status'].upper()}] {_summary(event)}"}
    else:
        body = event
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def sign(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw body with the endpoint's secret."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)
