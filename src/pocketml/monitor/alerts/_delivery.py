"""Sending the outbox: sign, POST, classify, and schedule the retry.

A receiver that answers 2xx has the event (``delivered``). Anything else (a 4xx or 5xx,
a refused connection, a timeout) is retried after an exponential backoff with jitter --
``base * 2^(attempt-1)`` capped at ``max_s``, of which a random half is kept ("equal
jitter"), so receivers coming back from an outage are not hit by every sender at once --
until ``max_attempts``; then the row is ``dead`` and stays in the delivery log
(``pocketml alerts deliveries --status dead``). Redirects are not followed: a receiver
that moved is a configuration to fix, not a place to send signed alerts blindly.

Every attempt of one delivery sends the same bytes with the same ``X-PocketML-Delivery``
id, so a receiver that got an event but whose answer was lost can drop the repeat.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from pocketml._version import __version__
from pocketml.monitor.alerts._event import SIGNATURE_HEADER, sign
from pocketml.monitor.alerts._outbox import OutboxStore
from pocketml.monitor.alerts._types import Delivery
from pocketml.protect import MasterKey

__all__ = ["AttemptResult", "Backoff", "DeliveryOutcome", "deliver_due", "post_event"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Retry schedule of a delivery.

    Args:
        max_attempts: attempts before a delivery is dead (the first included).
        base_s: delay after the first failure, before jitter.
        max_s: the longest delay, before jitter.
    """

    max_attempts: int = 8
    base_s: float = 5.0
    max_s: float = 600.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """Seconds to wait after ``attempts`` failed attempts (equal jitter)."""
        full = min(self.max_s, self.base_s * 2.0 ** max(0, attempts - 1))
        return full / 2 + rng.uniform(0.0, full / 2)


@dataclass(frozen=True)
class AttemptResult:
    """What one POST got: the status (None without an answer) and an error text."""

    ok: bool
    status: int | None
    error: str | None


def post_event(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    secret: str,
    delivery_id: str,
    event: str,
    timestamp: float,
) -> AttemptResult:
    """POST ``body`` to ``url`` with the signature headers; never raises for the network.

    Args:
        client: the sender's httpx client (its timeout bounds the attempt).
        url: the endpoint.
        body: the rendered event, sent as is (the signature covers these bytes).
        secret: the endpoint's secret.
        delivery_id: the ``X-PocketML-Delivery`` id, the same on every attempt.
        event: ``firing``, ``resolved`` or ``test`` (``X-PocketML-Event``).
        timestamp: unix seconds of this attempt (``X-PocketML-Timestamp``).
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"pocketml/{__version__}",
        SIGNATURE_HEADER: sign(secret, body),
        "X-PocketML-Timestamp": str(int(timestamp)),
        "X-PocketML-Delivery": delivery_id,
        "X-PocketML-Event": event,
    }
    try:
        response = client.post(url, content=body, headers=headers)
    # InvalidURL and UnicodeError are not HTTPErrors: a URL httpx cannot send to (stored
    # before its check was this strict) is a failed attempt, retried and then dead, never an
    # exception that stops the outbox for every app.
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
        return AttemptResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return AttemptResult(True, response.status_code, None)
    return AttemptResult(False, response.status_code, f"HTTP {response.status_code}")


@dataclass(frozen=True)
class DeliveryOutcome:
    """One attempt: ``delivered``, ``retry`` (scheduled again), ``dead``, or ``skipped``
    (another sender recorded this attempt first)."""

    delivery_id: str
    outcome: str
    status: int | None
    error: str | None


def deliver_due(
    store: OutboxStore,
    master_key: MasterKey,
    now: datetime,
    *,
    backoff: Backoff,
    rng: random.Random,
    timeout_s: float,
    on_outcome: Callable[[str], None] | None = None,
    limit: int = 100,
    only: str | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> list[DeliveryOutcome]:
    """Send the outbox rows whose time has come (at most ``limit``), one attempt each.

    Args:
        store: the alert tables.
        master_key: unwraps each endpoint's secret (label ``webhook:<endpoint id>``).
        now: the clock of this pass.
        backoff: the retry schedule; rng: its jitter; timeout_s: per POST.
        on_outcome: called with each outcome (the Prometheus counter).
        limit: rows per pass.
        only: just this delivery id.
        keep_going: asked before each attempt (the loop renews its lease there); the
            pass ends when it answers False, the rest waits for the next pass.
    """
    due = store.due(now.timestamp(), limit, only=only)
    outcomes = []
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        for delivery, body, wrapped, _fmt, _app in due:
            if keep_going is not None and not keep_going():
                break
            secret = master_key.unwrap(wrapped, f"webhook:{delivery.endpoint_id}").decode("utf-8")
            result = post_event(
                client,
                delivery.url,
                body.encode("utf-8"),
                secret=secret,
                delivery_id=delivery.id,
                event=delivery.event,
                timestamp=now.timestamp(),
            )
            outcome = _record(store, delivery, result, now, backoff, rng)
            if on_outcome is not None and outcome.outcome != "skipped":
                on_outcome(outcome.outcome)
            outcomes.append(outcome)
    return outcomes


def _record(
    store: OutboxStore,
    delivery: Delivery,
    result: AttemptResult,
    now: datetime,
    backoff: Backoff,
    rng: random.Random,
) -> DeliveryOutcome:
    attempts = delivery.attempts + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_status": result.status,
        "last_error": result.error,
    }
    if result.ok:
        outcome = "delivered"
        values.update(status="delivered", finished_at=now)
    elif attempts >= backoff.max_attempts:
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
        values["next_attempt_at"] = now.timestamp() + backoff.delay(attempts, rng)
    if not store.record_attempt(delivery, values):
        outcome = "skipped"
    return DeliveryOutcome(delivery.id, outcome, result.status, result.error)
