"""The outbox's SQL: queue, pick what is due (in order per alert and receiver), record
attempts, and read the delivery log. Rows are written with their transition by
``AlertStore.apply``; this store only reads them and moves them on.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pocketml.errors import NotFound
from pocketml.monitor.alerts._event import render
from pocketml.monitor.alerts._orm import OutboxRow, WebhookEndpointRow
from pocketml.monitor.alerts._store import StoreBase
from pocketml.monitor.alerts._types import Delivery, WebhookEndpoint

__all__ = ["OutboxStore", "outbox_row"]

_E: sa.Table = WebhookEndpointRow.__table__  # type: ignore[assignment]
_O: sa.Table = OutboxRow.__table__  # type: ignore[assignment]


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row.delivery_id,
        app_id=row.app_id,
        endpoint_id=row.endpoint_id,
        url=row.url,
        alert_id=row.alert_id,
        event=row.event,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


_DELIVERIES = sa.select(*_O.c, _E.c.url).join(_E, _E.c.id == _O.c.endpoint_id)


def outbox_row(
    endpoint: WebhookEndpoint,
    event: dict[str, Any],
    alert_id: str | None,
    now: datetime,
    *,
    kind: str | None = None,
) -> dict[str, Any]:
    """A new pending outbox row: ``event`` rendered for ``endpoint``, due at ``now``."""
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


class OutboxStore(StoreBase):
    """The webhook outbox (and delivery log) on the registry's engine."""

    def enqueue(self, app_id: str, event: dict[str, Any]) -> None:
        """Add one outbox row outside a transition (the "send test" action)."""
        with self._write("queue a webhook delivery") as conn:
            conn.execute(sa.insert(_O).values(app_id=app_id, **event))

    def due(
        self, now: float, limit: int, *, only: str | None = None
    ) -> list[tuple[Delivery, str, bytes, str, str]]:
        """Pending deliveries whose time has come: (delivery, body, wrapped secret, format, app).

        Events of one alert reach one receiver in order: a row waits while an earlier row
        of the same alert and endpoint is still pending (a "resolved" never overtakes the
        "firing" that is being retried). ``only``: just this delivery id (the test action).
        """
        earlier = sa.alias(_O, "earlier")
        overtakes = (
            sa.select(earlier.c.id)
            .where(
                earlier.c.endpoint_id == _O.c.endpoint_id,
                earlier.c.alert_id == _O.c.alert_id,
                earlier.c.status == "pending",
                earlier.c.id < _O.c.id,
            )
            .exists()
        )
        query = (
            sa.select(*_O.c, _E.c.url, _E.c.secret, _E.c.format)
            .join(_E, _E.c.id == _O.c.endpoint_id)
            .where(_O.c.status == "pending", _O.c.next_attempt_at <= now, ~overtakes)
            .order_by(_O.c.next_attempt_at, _O.c.id)
            .limit(limit)
        )
        if only is not None:
            query = query.where(_O.c.delivery_id == only)
        with self._read("read the webhook outbox"), self.engine.connect() as conn:
            return [
                (_delivery(row), row.body, bytes(row.secret), row.format, row.app_id)
                for row in conn.execute(query)
            ]

    def has_due(self, now: float) -> bool:
        """True when a pending delivery's time has come (one cheap read per idle pass)."""
        query = sa.select(_O.c.id).where(_O.c.status == "pending", _O.c.next_attempt_at <= now)
        with self._read("read the webhook outbox"), self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def record_attempt(self, delivery: Delivery, values: dict[str, Any]) -> bool:
        """Store an attempt's result, if nobody recorded this attempt before."""
        with self._write("record a webhook attempt") as conn:
            done = conn.execute(
                sa.update(_O)
                .where(
                    _O.c.delivery_id == delivery.id,
                    _O.c.status == "pending",
                    _O.c.attempts == delivery.attempts,
                )
                .values(**values)
            )
            return done.rowcount == 1

    def get_delivery(self, app_id: str, delivery_id: str) -> Delivery:
        """One delivery of the app. Raises NotFound."""
        query = _DELIVERIES.where(_O.c.app_id == app_id, _O.c.delivery_id == delivery_id)
        with self._read("read a webhook delivery"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no webhook delivery {delivery_id!r} in this app.")
        return _delivery(row)

    def list_deliveries(self, app_id: str, *, status: str | None, limit: int) -> list[Delivery]:
        """The delivery log of the app, newest first."""
        query = _DELIVERIES.where(_O.c.app_id == app_id)
        if status is not None:
            query = query.where(_O.c.status == status)
        query = query.order_by(_O.c.id.desc()).limit(limit)
        with self._read("read the webhook deliveries"), self.engine.connect() as conn:
            return [_delivery(row) for row in conn.execute(query)]
