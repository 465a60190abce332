"""Cloud inference calls: ``POST /v1/models/{name}/predict`` with timeout, retries and breaker.

A call is refused at once while the circuit breaker is open. Network errors, timeouts
and 5xx answers are retried ``max_retries`` times with exponential backoff and jitter; a
call that still fails counts as one breaker failure. A 4xx (the server is up, the request
is wrong) is not retried and does not count against the breaker.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pocketml.device._net import Backoff, CircuitBreaker, DeviceHttp
from pocketml.device._types import HybridPolicy, ProtocolError
from pocketml.errors import PocketMLError, Unavailable

__all__ = ["CircuitOpen", "CloudAnswer", "CloudClient"]


class CircuitOpen(Unavailable):
    """The breaker is open: the cloud failed repeatedly and is not called for a while."""

    code = "circuit_open"


@dataclass(frozen=True)
class CloudAnswer:
    """The first prediction of a cloud response."""

    label: str
    index: int
    confidence: float
    probabilities: np.ndarray
    version: int | None
    variant: str | None


async def _asyncio_sleep(seconds: float) -> None:
    """``asyncio.sleep``, imported on first use: asyncio costs ~35 ms of ``import``."""
    import asyncio

    await asyncio.sleep(seconds)


class CloudClient:
    """Calls the cloud model of a model name, sharing one breaker per device.

    Args:
        http: the device's HTTP clients.
        breaker: the device's circuit breaker.
        backoff: delays between retries.
        rng: jitter source.
        sleep: sync wait (injectable).
        async_sleep: async wait (injectable; default ``asyncio.sleep``).
    """

    def __init__(
        self,
        http: DeviceHttp,
        breaker: CircuitBreaker,
        backoff: Backoff,
        rng: random.Random,
        sleep: Callable[[float], None],
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        self.http = http
        self.breaker = breaker
        self.backoff = backoff
        self.rng = rng
        self.sleep = sleep
        self.async_sleep = async_sleep or _asyncio_sleep

    def _refuse_if_open(self, model: str) -> None:
        if not self.breaker.allow():
            raise CircuitOpen(
                f"cloud inference for {model!r} is paused: the circuit breaker opened after "
                f"{self.breaker.failure_threshold} consecutive failures and probes again "
                f"{self.breaker.cooldown_s:g} s after opening."
            )

    def predict(
        self, model: str, policy: HybridPolicy, inputs: np.ndarray, body: dict[str, Any]
    ) -> CloudAnswer:
        """Call the cloud model once (with retries).

        Raises:
            CircuitOpen: the breaker refused the call.
            Unavailable: every attempt failed on the network, by timeout or with a 5xx.
            PocketMLError: the server refused the request (4xx).
        """
        self._refuse_if_open(model)
        payload = {"inputs": inputs.tolist(), **body}
        route = policy.cloud_route or f"/v1/models/{model}/predict"
        attempt = 0
        while True:
            try:
                response = self.http.request(
                    "POST", route, json=payload, timeout=policy.timeout_ms / 1000.0
                )
            except Unavailable:
                if attempt >= policy.max_retries:
                    self.breaker.record_failure()
                    raise
                self.sleep(self.backoff.delay(attempt, self.rng))
                attempt += 1
                continue
            except PocketMLError:
                self.breaker.record_success()
                raise
            self.breaker.record_success()
            return parse_answer(_json_body(response))

    async def apredict(
        self, model: str, policy: HybridPolicy, inputs: np.ndarray, body: dict[str, Any]
    ) -> CloudAnswer:
        """Async twin of :meth:`predict`."""
        self._refuse_if_open(model)
        payload = {"inputs": inputs.tolist(), **body}
        route = policy.cloud_route or f"/v1/models/{model}/predict"
        attempt = 0
        while True:
            try:
                response = await self.http.arequest(
                    "POST", route, json=payload, timeout=policy.timeout_ms / 1000.0
                )
            except Unavailable:
                if attempt >= policy.max_retries:
                    self.breaker.record_failure()
                    raise
                await self.async_sleep(self.backoff.delay(attempt, self.rng))
                attempt += 1
                continue
            except PocketMLError:
                self.breaker.record_success()
                raise
            self.breaker.record_success()
            return parse_answer(_json_body(response))


def _json_body(response: Any) -> Any:
    """The response's JSON, or ProtocolError: a 200 whose body is not JSON (a captive
    portal, a proxy's error page) is a broken answer, not a crash of ``predict``."""
    try:
        return response.json()
    except ValueError as exc:
        raise ProtocolError(f"the cloud predict answer is not JSON: {exc}") from exc


def parse_answer(body: Any) -> CloudAnswer:
    """Read the first prediction of a cloud predict response.

    Raises:
        ProtocolError: the body does not have the contract's shape.
    """
    try:
        first = body["predictions"][0]
        probabilities = np.asarray(first.get("probabilities") or [], dtype=np.float32)
        return CloudAnswer(
            label=str(first["label"]),
            index=int(first.get("index", -1)),
            confidence=float(first["confidence"]),
            probabilities=probabilities,
            version=body.get("version"),
            variant=body.get("variant"),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ProtocolError(
            f"the cloud predict answer lacks predictions[0].label/confidence: {exc!r}"
        ) from exc
