"""Pydantic models of the alerting admin API: rules, alerts, webhooks, deliveries.

Types and sizes are checked here (422 before any work); the contract of a rule's fields
(metric names, ranges) has one home, ``pocketml.monitor.alerts.validate_rule``, whose
``InvalidInput`` the routes answer as 422 too. Imports pydantic only, so the CLI's
``AdminClient`` parses responses with the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pocketml.bounds import Bounded, FiniteFloat, Text

__all__ = [
    "AlertList",
    "AlertPublic",
    "DefaultRulesCreate",
    "DeliveryList",
    "DeliveryPublic",
    "RuleCreate",
    "RuleList",
    "RulePublic",
    "WebhookCreate",
    "WebhookCreatedPublic",
    "WebhookList",
    "WebhookPublic",
]


class _Input(Bounded):
    model_config = ConfigDict(extra="forbid")


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


_ModelName = Annotated[Text, Field(min_length=1, max_length=64, examples=["digits"])]
_Label = Annotated[Text, Field(min_length=1, max_length=64)]


class RuleCreate(_Input):
    """An alert rule of one model (docs/alerts.md "Rules")."""

    model: _ModelName
    name: Annotated[Text, Field(min_length=1, max_length=64, examples=["latency-p95"])]
    metric: Annotated[Text, Field(min_length=1, max_length=48, examples=["latency_p95_ms"])]
    comparison: Literal[">", ">=", "<", "<="] = ">"
    threshold: FiniteFloat
    window_s: FiniteFloat = Field(3600.0, description="Trailing window, seconds [60, 30 days].")
    min_n: int = Field(100, description="Observations the value needs, else no change.")
    severity: Literal["info", "warning", "critical"] = "warning"
    for_s: FiniteFloat = Field(0.0, description="Seconds a breach stays pending before firing.")
    cooldown_s: FiniteFloat = Field(1800.0, description="Quiet seconds after a resolution.")
    scope: dict[Literal["version", "device_class"], _Label | int] = Field(
        default_factory=dict, description="Only readings with these labels."
    )


class DefaultRulesCreate(_Input):
    """Create the default rules of one model (those it does not have yet)."""

    model: _ModelName


class RulePublic(_Public):
    """A stored rule."""

    id: str
    model: str
    name: str
    metric: str
    comparison: str
    threshold: float
    window_s: float
    min_n: int
    severity: str
    for_s: float
    cooldown_s: float
    scope: dict[str, str]
    created_by: str
    created_at: datetime


class RuleList(BaseModel):
    """Rules, by model then name."""

    items: list[RulePublic]


class AlertPublic(_Public):
    """One alert episode: its rule, labels, state, latest reading and timestamps."""

    id: str
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


class AlertList(BaseModel):
    """Alert episodes, newest first."""

    items: list[AlertPublic]


class WebhookCreate(_Input):
    """A receiver of the app's alert events."""

    url: Annotated[Text, Field(min_length=1, max_length=2048)]
    format: Literal["pocketml", "alertmanager", "slack"] = "pocketml"


class WebhookPublic(_Public):
    """A receiver (its secret is never shown again after creation)."""

    id: str
    url: str
    format: str
    created_by: str
    created_at: datetime


class WebhookCreatedPublic(WebhookPublic):
    """A new receiver and its signing secret: store it now, it is not shown again."""

    secret: str


class WebhookList(BaseModel):
    """The app's receivers."""

    items: list[WebhookPublic]


class DeliveryPublic(_Public):
    """One event to one receiver in the delivery log."""

    id: str
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


class DeliveryList(BaseModel):
    """Deliveries, newest first."""

    items: list[DeliveryPublic]
