"""Simulated networks: an httpx transport wrapper that adds latency, loss, limits and outages.

Time is simulated: a :class:`SimClock` is real ``perf_counter`` time plus an offset that the
transport advances by the latency, jitter and transfer time of each request, so a 3G
download of a 1 MB package "takes" seconds on the device's clock without any real sleep.
Give the same clock to the Device (``clock=clock.now, sleep=clock.sleep``) and its
latencies, backoffs and circuit breaker all live in simulated time.

Faults are drawn from one seeded ``random.Random``, so a run is reproducible:

- packet loss before the request reaches the server (``ConnectError``),
- loss of the answer after the server handled it (``ReadError``: the server did the work,
  the client does not know; this is what idempotent telemetry batches are for),
- a body cut part-way (``ReadError`` mid-stream; exercises download resume),
- timeouts when latency plus transfer time exceeds the request's read timeout,
- outage windows on the simulated clock (every request fails with ``ConnectError``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace

import httpx

from pocketml.errors import InvalidInput

__all__ = [
    "PROFILES",
    "AsyncSimulatedTransport",
    "NetworkProfile",
    "SimClock",
    "SimulatedTransport",
    "profile",
]


class SimClock:
    """Real monotonic time plus a simulated offset (thread-safe).

    Args:
        start_offset: initial offset in seconds.
    """

    def __init__(self, start_offset: float = 0.0) -> None:
        self._offset = start_offset
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds on the simulated clock."""
        return time.perf_counter() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (simulated waiting)."""
        if seconds > 0:
            with self._lock:
                self._offset += seconds

    def sleep(self, seconds: float) -> None:
        """A ``time.sleep`` replacement that advances the clock instead of waiting."""
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """An ``asyncio.sleep`` replacement that advances the clock instead of waiting."""
        self.advance(seconds)


@dataclass(frozen=True)
class NetworkProfile:
    """How a simulated network behaves.

    Attributes:
        name: profile name.
        latency_s: one-way base latency (a request costs two).
        jitter_s: extra latency, uniform in [0, jitter_s] per request.
        bandwidth_bps: bytes per second for bodies (0: unlimited).
        loss: probability a request is lost before reaching the server.
        response_loss: probability the answer is lost after the server handled it.
        cut: probability a response body is cut part-way.
        outages: (start, end) windows on the simulated clock with no connectivity.
        offline: no connectivity at all.
    """

    name: str
    latency_s: float = 0.0
    jitter_s: float = 0.0
    bandwidth_bps: float = 0.0
    loss: float = 0.0
    response_loss: float = 0.0
    cut: float = 0.0
    outages: tuple[tuple[float, float], ...] = field(default=())
    offline: bool = False

    def with_outage(self, start: float, end: float) -> NetworkProfile:
        """A copy with one more outage window [start, end) on the simulated clock."""
        return replace(self, outages=(*self.outages, (start, end)))


PROFILES: dict[str, NetworkProfile] = {
    "wifi": NetworkProfile("wifi", latency_s=0.005, jitter_s=0.005, bandwidth_bps=6e6),
    "4g": NetworkProfile("4g", latency_s=0.03, jitter_s=0.02, bandwidth_bps=1.5e6, loss=0.01),
    "3g": NetworkProfile(
        "3g", latency_s=0.15, jitter_s=0.1, bandwidth_bps=1.5e5, loss=0.03, cut=0.05
    ),
    "lossy": NetworkProfile(
        "lossy",
        latency_s=0.08,
        jitter_s=0.12,
        bandwidth_bps=4e5,
        loss=0.2,
        response_loss=0.1,
        cut=0.3,
    ),
    "offline": NetworkProfile("offline", offline=True),
}


def profile(name: str) -> NetworkProfile:
    """The named profile (wifi, 4g, 3g, lossy, offline).

    Raises:
        InvalidInput: unknown name.
    """
    if name not in PROFILES:
        raise InvalidInput(f"unknown network profile {name!r}; choose from {', '.join(PROFILES)}")
    return PROFILES[name]


class _Simulator:
    """The decisions shared by the sync and async transports."""

    def __init__(self, network: NetworkProfile, clock: SimClock, seed: int) -> None:
        self.network = network
        self.clock = clock
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.stats: dict[str, int] = {
            "requests": 0,
            "lost": 0,
            "answers_lost": 0,
            "cut": 0,
            "timeouts": 0,
            "outage": 0,
        }

    def _draw(self) -> tuple[float, float, float, float]:
        with self.lock:
            rng = self.rng
            return rng.random(), rng.random(), rng.random(), rng.random()

    def is_down(self) -> bool:
        now = self.clock.now()
        return self.network.offline or any(a <= now < b for a, b in self.network.outages)

    def before(self, request: httpx.Request) -> tuple[float, float, float]:
        """Decide the request's fate; raise for loss/outage. Returns (jitter, r_answer, r_cut)."""
        self.stats["requests"] += 1
        if self.is_down():
            self.stats["outage"] += 1
            raise httpx.ConnectError("simulated network: no connectivity", request=request)
        r_loss, r_jitter, r_answer, r_cut = self._draw()
        net = self.network
        if r_loss < net.loss:
            self.clock.advance(net.latency_s)
            self.stats["lost"] += 1
            raise httpx.ConnectError("simulated network: request lost", request=request)
        return r_jitter * net.jitter_s, r_answer, r_cut

    def transfer(self, request: httpx.Request, nbytes: int, jitter: float) -> None:
        """Advance the clock by latency and transfer time; raise a timeout when too slow."""
        net = self.network
        cost = 2 * net.latency_s + jitter
        if net.bandwidth_bps > 0:
            cost += nbytes / net.bandwidth_bps
        timeout = (request.extensions.get("timeout") or {}).get("read")
        if timeout is not None and cost > timeout:
            self.clock.advance(timeout)
            self.stats["timeouts"] += 1
            raise httpx.ReadTimeout("simulated network: read timed out", request=request)
        self.clock.advance(cost)

    def after(self, request: httpx.Request, r_answer: float) -> None:
        if r_answer < self.network.response_loss:
            self.stats["answers_lost"] += 1
            raise httpx.ReadError("simulated network: answer lost", request=request)

    def cut_at(self, content: bytes, r_cut: float) -> int | None:
        """Where to cut a body (None: deliver it whole). Only bodies over 1 KiB are cut."""
        if len(content) > 1024 and r_cut < self.network.cut:
            self.stats["cut"] += 1
            return len(content) // 2
        return None


class _CutStream(httpx.SyncByteStream):
    def __init__(self, content: bytes, cut: int | None, request: httpx.Request) -> None:
        self.content, self.cut, self.request = content, cut, request

    def __iter__(self) -> Iterator[bytes]:
        if self.cut is None:
            yield self.content
            return
        yield self.content[: self.cut]
        raise httpx.ReadError("simulated network: connection cut", request=self.request)


class _AsyncCutStream(httpx.AsyncByteStream):
    def __init__(self, content: bytes, cut: int | None, request: httpx.Request) -> None:
        self.content, self.cut, self.request = content, cut, request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.cut is None:
            yield self.content
            return
        yield self.content[: self.cut]
        raise httpx.ReadError("simulated network: connection cut", request=self.request)


_DROPPED_HEADERS = {b"content-encoding", b"content-length", b"transfer-encoding"}


def _rebuild(
    response: httpx.Response,
    content: bytes,
    stream: httpx.SyncByteStream | httpx.AsyncByteStream,
    request: httpx.Request,
) -> httpx.Response:
    # The body was decoded by read(): re-announce it as identity with its real length.
    headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _DROPPED_HEADERS]
    headers.append((b"content-length", str(len(content)).encode()))
    return httpx.Response(
        response.status_code,
        headers=headers,
        stream=stream,
        extensions=response.extensions,
        request=request,
    )


class SimulatedTransport(httpx.BaseTransport):
    """Wraps a real transport with a simulated network (see the module docstring).

    Args:
        network: a NetworkProfile (or a name from ``PROFILES``).
        clock: the simulated clock to advance.
        seed: seed of the fault RNG.
        inner: the real transport (default ``httpx.HTTPTransport()``).
    """

    def __init__(
        self,
        network: NetworkProfile | str,
        clock: SimClock,
        *,
        seed: int = 0,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        network = profile(network) if isinstance(network, str) else network
        self.sim = _Simulator(network, clock, seed)
        self.inner = inner or httpx.HTTPTransport()

    @property
    def stats(self) -> dict[str, int]:
        """Counts of requests and injected faults."""
        return self.sim.stats

    @property
    def network(self) -> NetworkProfile:
        """The current network profile."""
        return self.sim.network

    def set_network(self, network: NetworkProfile | str) -> None:
        """Switch networks (a phone leaving Wi-Fi): later requests use ``network``."""
        self.sim.network = profile(network) if isinstance(network, str) else network

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the simulated network."""
        jitter, r_answer, r_cut = self.sim.before(request)
        request.read()
        response = self.inner.handle_request(request)
        content = response.read()
        response.close()
        self.sim.transfer(request, len(request.content) + len(content), jitter)
        self.sim.after(request, r_answer)
        cut = self.sim.cut_at(content, r_cut)
        return _rebuild(response, content, _CutStream(content, cut, request), request)

    def close(self) -> None:
        """Close the inner transport."""
        self.inner.close()


class AsyncSimulatedTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`SimulatedTransport` (for ``LocalModel.apredict``)."""

    def __init__(
        self,
        network: NetworkProfile | str,
        clock: SimClock,
        *,
        seed: int = 0,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        network = profile(network) if isinstance(network, str) else network
        self.sim = _Simulator(network, clock, seed)
        self.inner = inner or httpx.AsyncHTTPTransport()

    @property
    def stats(self) -> dict[str, int]:
        """Counts of requests and injected faults."""
        return self.sim.stats

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the simulated network."""
        jitter, r_answer, r_cut = self.sim.before(request)
        await request.aread()
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        await response.aclose()
        self.sim.transfer(request, len(request.content) + len(content), jitter)
        self.sim.after(request, r_answer)
        cut = self.sim.cut_at(content, r_cut)
        return _rebuild(response, content, _AsyncCutStream(content, cut, request), request)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


def outage(network: NetworkProfile, windows: Sequence[tuple[float, float]]) -> NetworkProfile:
    """A copy of ``network`` with the given outage windows added."""
    for start, end in windows:
        network = network.with_outage(start, end)
    return network
