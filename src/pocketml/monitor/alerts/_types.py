"""The frozen values the alerting service hands out (ORM rows never leave the store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = ["ALERT_STATES", "DELIVERY_STATUSES", "Alert", "Delivery", "WebhookEndpoint"]

ALERT_STATES = ("pending", "firing", "resolved", "inactive")
"""Stored states of an alert episode (``inactive``: pending, then cleared before firing)."""
DELIVERY_STATUSES = ("pending", "delivered", "dead")
"""A delivery is ``pending`` until a receiver answers 2xx (``delivered``) or the attempts
run out (``dead``)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class Alert:
    """One episode of one alert: a rule breached for one label set.

    ``value`` and ``n`` are the latest reading; ``starts_at`` is when it fired (None while
    pending), ``ends_at`` when it resolved.
    """

    id: str
    app_id: str
    rule_id: str
    rule: str
    model: str
    fingerprint: str
    labels: dict[str, str]
    state: str
    metric: str
    comparison: str
    threshold: float
    severity: str
    value: float | None
    n: int
    pending_since: datetime
    starts_at: datetime | None
    ends_at: datetime | None
    evaluated_at: datetime
    acked_at: datetime | None
    acked_by: str | None

    @property
    def version(self) -> int | None:
        """The model version the alert is about (None when the labels name none)."""
        text = self.labels.get("version", "")
        return int(text) if text.isdigit() else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601)."""
        data = asdict(self)
        for key in ("pending_since", "starts_at", "ends_at", "evaluated_at", "acked_at"):
            data[key] = _iso(data[key])
        return data


@dataclass(frozen=True)
class WebhookEndpoint:
    """A receiver of an app's alert events. Its secret is never part of this value."""

    id: str
    app_id: str
    url: str
    format: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Delivery:
    """One event to one endpoint, as the outbox (the delivery log) holds it."""

    id: str
    app_id: str
    endpoint_id: str
    url: str
    alert_id: str | None
    event: str
    status: str
    attempts: int
    next_attempt_at: float
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
