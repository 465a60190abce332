"""The two background jobs of alerting, each under its own database lease.

``AlertEvaluator`` runs ``AlertService.evaluate`` and ``WebhookDeliverer`` runs
``AlertService.deliver``, each in ``pocketml.db.run_periodically`` and only while holding
its lease (``alert-evaluator``, ``alert-webhooks`` in the table the rollout evaluator
uses), so several replicas evaluate once and send once. Separate loops on purpose: a
receiver that hangs until its timeout delays only the next delivery, never the next
evaluation, and neither loop shares anything with telemetry intake but the database.

An idle server writes nothing: with no rule (or nothing due) a pass ends after one read,
without taking the lease. Tests call ``run_once(now)`` directly instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta

from pocketml.db import Lease, process_owner, run_periodically, utcnow
from pocketml.monitor.alerts._store import LEASES
from pocketml.monitor.alerts.service import AlertService, DeliveryOutcome, EvaluationOutcome

__all__ = ["AlertEvaluator", "WebhookDeliverer"]

logger = logging.getLogger(__name__)


class _LeasedJob:
    name = ""

    def __init__(self, service: AlertService, *, interval_s: float, owner: str | None) -> None:
        self.service = service
        self.interval_s = interval_s
        self.owner = owner or process_owner()

    @property
    def lease(self) -> Lease:
        """The job's lease row."""
        return Lease(
            self.service.registry.store.engine, LEASES, self.name, what=f"the {self.name} lease"
        )

    def _acquire(self, moment: datetime) -> bool:
        return self.lease.acquire(self.owner, moment.timestamp(), max(3 * self.interval_s, 10.0))

    async def _run(self, pass_fn: object, stop: asyncio.Event, max_passes: int | None) -> None:
        await run_periodically(
            pass_fn,  # type: ignore[arg-type]
            stop,
            interval_s=self.interval_s,
            name=self.name,
            on_stop=lambda: self.lease.release(self.owner),
            max_passes=max_passes,
            logger=logger,
        )


class AlertEvaluator(_LeasedJob):
    """Evaluates every alert rule each ``interval_s`` seconds while holding its lease.

    Args:
        service: the alert service.
        interval_s: seconds between passes.
        owner: this replica's lease owner id.
    """

    name = "alert-evaluator"

    def __init__(
        self, service: AlertService, *, interval_s: float = 30.0, owner: str | None = None
    ) -> None:
        super().__init__(service, interval_s=interval_s, owner=owner)

    def run_once(self, now: datetime | None = None) -> list[EvaluationOutcome] | None:
        """One pass if this replica holds (or takes) the lease; None when another holds it."""
        moment = now or utcnow()
        if not self.service.list_rules_exist():
            return []
        if not self._acquire(moment):
            return None
        return self.service.evaluate(moment)

    async def run_forever(self, stop: asyncio.Event, *, max_passes: int | None = None) -> None:
        """Pass every ``interval_s`` seconds until ``stop`` is set; releases the lease."""
        await self._run(self.run_once, stop, max_passes)


class WebhookDeliverer(_LeasedJob):
    """Sends due webhook deliveries each ``interval_s`` seconds while holding its lease.

    Args:
        service: the alert service.
        interval_s: seconds between passes.
        owner: this replica's lease owner id.
    """

    name = "alert-webhooks"

    def __init__(
        self, service: AlertService, *, interval_s: float = 5.0, owner: str | None = None
    ) -> None:
        super().__init__(service, interval_s=interval_s, owner=owner)

    def run_once(self, now: datetime | None = None) -> list[DeliveryOutcome] | None:
        """One pass if this replica holds (or takes) the lease; None when another holds it."""
        moment = now or utcnow()
        if not self.service.outbox.has_due(moment.timestamp()):
            return []
        if not self._acquire(moment):
            return None
        started = time.monotonic()
        renewed = [started]

        def keep_lease() -> bool:
            # A pass of slow receivers can outlast the lease (100 rows x the POST timeout):
            # renew it each interval, and stop if another replica has taken it meanwhile.
            elapsed = time.monotonic()
            if elapsed - renewed[0] < self.interval_s:
                return True
            renewed[0] = elapsed
            return self._acquire(moment + timedelta(seconds=elapsed - started))

        return self.service.deliver(moment, keep_going=keep_lease)

    async def run_forever(self, stop: asyncio.Event, *, max_passes: int | None = None) -> None:
        """Pass every ``interval_s`` seconds until ``stop`` is set; releases the lease."""
        await self._run(self.run_once, stop, max_passes)
