"""Sending one outbox row: sign, POST, classify, and schedule the retry.

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

import random
from dataclasses import dataclass

import httpx

from pocketml._version import __version__
from pocketml.monitor.alerts._event import SIGNATURE_HEADER, sign

__all__ = ["AttemptResult", "Backoff", "post_event"]


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
    except httpx.HTTPError as exc:
        return AttemptResult(False, None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return AttemptResult(True, response.status_code, None)
    return AttemptResult(False, response.status_code, f"HTTP {response.status_code}")
