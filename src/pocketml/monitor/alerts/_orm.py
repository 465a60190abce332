"""SQLAlchemy tables of alerting: rules, alerts, webhook endpoints and the outbox.

They share the one ``Base`` and Alembic history (revision ``0011``); rows never leave
``_store.py``. De-duplication is a constraint, not a convention: an alert is "active"
(pending or firing) while ``active_key`` holds its fingerprint, NULL afterwards, under a
unique constraint (NULLs never collide on SQLite or PostgreSQL), so two evaluators can never
open two alerts for the same rule and labels. The outbox is also the delivery log: a row is
written in the transaction that changes the alert, and the delivery loop moves it from
``pending`` to ``delivered`` or, after the last attempt, ``dead``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, UTCDateTime

__all__ = ["AlertRow", "AlertRuleRow", "OutboxRow", "WebhookEndpointRow"]


class AlertRuleRow(Base):
    """One alert rule of one model: metric, comparison, threshold, window, minimum n, ..."""

    __tablename__ = "alert_rules"
    __table_args__ = (sa.UniqueConstraint("model_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(64))
    metric: Mapped[str] = mapped_column(sa.String(48))
    comparison: Mapped[str] = mapped_column(sa.String(2))
    threshold: Mapped[float] = mapped_column(sa.Double)
    window_s: Mapped[float] = mapped_column(sa.Double)
    min_n: Mapped[int] = mapped_column(sa.Integer)
    severity: Mapped[str] = mapped_column(sa.String(16))
    for_s: Mapped[float] = mapped_column(sa.Double)
    cooldown_s: Mapped[float] = mapped_column(sa.Double)
    scope: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AlertRow(Base):
    """One episode of one alert (a rule and its labels): pending -> firing -> resolved."""

    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("active_key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    rule_id: Mapped[str] = mapped_column(
        sa.ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True
    )
    model: Mapped[str] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    active_key: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    labels: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16))
    value: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    n: Mapped[int] = mapped_column(sa.Integer)
    pending_since: Mapped[datetime] = mapped_column(UTCDateTime)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)


class WebhookEndpointRow(Base):
    """A receiver of an app's alert events; its HMAC secret wrapped by the master key."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    format: Mapped[str] = mapped_column(sa.String(16))
    secret: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """One delivery of one event to one endpoint: the exact body, its attempts, its fate."""

    __tablename__ = "alert_outbox"
    __table_args__ = (sa.Index(None, "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    endpoint_id: Mapped[str] = mapped_column(
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    alert_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    event: Mapped[str] = mapped_column(sa.String(16))
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    next_attempt_at: Mapped[float] = mapped_column(sa.Double)
    last_status: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
