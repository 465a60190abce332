"""HTTP plumbing of the device SDK: the clients, error mapping, backoff and circuit breaker.

Every httpx failure is translated here (``Unavailable`` for the network, the matching
pocketml error for a JSON error body), so the rest of the SDK never sees httpx exceptions.
The device key goes to the configured server's origin only: API calls must be plain paths
on it, and a package URL on another origin is fetched (without the key) only from a host
the app allowed with ``package_hosts`` (a CDN); any other URL is refused before a request.
Backoff is exponential with "equal jitter" (half fixed, half random) from a seeded RNG;
the breaker and the backoff read an injectable clock and sleep, so tests never sleep.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from pocketml import errors as _errors
from pocketml.errors import PocketMLError, Unavailable
from pocketml.protocol import error_class

__all__ = [
    "Backoff",
    "CircuitBreaker",
    "DeviceHttp",
    "error_from_response",
    "is_retryable",
    "origin_of",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# The largest API answer read into memory (check-in manifests, keys, cloud predictions).
MAX_ANSWER_BYTES = 16 << 20


class ServerError(Unavailable):
    """The server answered 5xx: it is up but failing (retryable)."""

    code = "server_error"


def error_from_response(response: httpx.Response) -> PocketMLError:
    """Turn an HTTP error response into the pocketml error it stands for (not raised).

    Args:
        response: a response with status >= 400 whose body has been read.

    Returns:
        ``ServerError`` (an ``Unavailable``) for 5xx, else the class of the status and
        code in ``pocketml.protocol.ERROR_CATALOG``.
    """
    message, code = response.text[:300] or response.reason_phrase, None
    with contextlib.suppress(ValueError, KeyError, TypeError):
        error = response.json()["error"]
        message = error["message"]
        code = error["code"]
    status = response.status_code
    cls = (
        ServerError
        if status >= 500
        else error_class(status, code if isinstance(code, str) else None)
    )
    return cls(f"{message} (HTTP {status} from {response.request.url.path})")


def is_retryable(exc: BaseException) -> bool:
    """True for failures worth retrying: network errors, timeouts and 5xx answers."""
    return isinstance(exc, Unavailable)


def translate(exc: httpx.HTTPError, url: str) -> Unavailable:
    """Translate an httpx transport error into ``Unavailable`` (message says what to do)."""
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(
            f"the pocketml server at {url} did not answer in time ({type(exc).__name__}); "
            "the SDK retries later. Check the network or raise the timeout."
        )
    return Unavailable(
        f"cannot reach the pocketml server at {url} ({type(exc).__name__}: {exc}); "
        "check the network and the server URL."
    )


def origin_of(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of an absolute URL, default ports filled in."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def _check_path(path: str) -> None:
    """Refuse anything but a path on the server (an absolute URL would carry the key away)."""
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise _errors.InvalidInput(
            f"device API calls go to the configured server only: expected a path like "
            f"'/v1/checkin'; got {str(path)[:80]!r}."
        )


def _append_bounded(body: bytearray, chunk: bytes, path: str) -> None:
    body += chunk
    if len(body) > MAX_ANSWER_BYTES:
        raise _errors.IntegrityError(
            f"the server's answer to {path[:80]} is larger than {MAX_ANSWER_BYTES} bytes; "
            "refused without reading further. Is something between the device and the "
            "server rewriting answers?"
        )


def _answer(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """The read answer (headers of the decoded body), or the pocketml error of its status."""
    headers = [
        (k, v)
        for k, v in streamed.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    response = httpx.Response(
        streamed.status_code, headers=headers, content=body, request=streamed.request
    )
    if response.status_code >= 400:
        raise error_from_response(response)
    return response


class DeviceHttp:
    """Lazily created sync and async httpx clients with the device key.

    Args:
        base_url: the server URL.
        device_key: the app's device key (bearer token).
        transport: an httpx transport for the sync client (the simulator injects one).
        async_transport: an httpx async transport for ``apredict``.
        package_hosts: hosts (``cdn.example.com`` or ``host:port``) other than the
            server's own from which packages may be downloaded, without the device key.
    """

    def __init__(
        self,
        base_url: str,
        device_key: str,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        package_hosts: Collection[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {device_key}"}
        self._transport = transport
        self._async_transport = async_transport
        self._package_hosts = frozenset(h.lower() for h in package_hosts)
        self._client: httpx.Client | None = None
        self._anonymous: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._lock = threading.Lock()

    def package_url(self, url: str) -> tuple[httpx.URL, bool]:
        """Where to download a package from, and whether the device key may go along.

        Args:
            url: ``package.url`` of a check-in entry (a path, or an absolute URL).

        Returns:
            The absolute URL and True when it is on the server's origin (send the key).

        Raises:
            InvalidInput: not http(s), credentials in the URL, or a host that is neither
                the server's nor in ``package_hosts``.
        """
        server = httpx.URL(self.base_url)
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise _errors.InvalidInput(f"package.url {url[:80]!r} is not a URL: {exc}") from exc
        if not parsed.is_absolute_url:
            _check_path(url)
            return server.copy_with(raw_path=server.raw_path.rstrip(b"/") + parsed.raw_path), True
        if parsed.scheme not in _DEFAULT_PORTS or parsed.userinfo:
            raise _errors.InvalidInput(
                f"package.url must be an http(s) URL without credentials; got {url[:80]!r}."
            )
        if origin_of(parsed) == origin_of(server):
            return parsed, True
        host = parsed.host.lower()
        if host in self._package_hosts or f"{host}:{parsed.port}" in self._package_hosts:
            return parsed, False
        raise _errors.InvalidInput(
            f"package.url {url[:80]!r} is not on the server's origin {self.base_url} and "
            f"its host is not an allowed package host ({sorted(self._package_hosts)}). "
            "Refused (the device key never leaves the server's origin); if the app uses a "
            "CDN, pass Device(..., package_hosts=['cdn.example.com'])."
        )

    @contextlib.contextmanager
    def stream_package(self, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """Stream ``GET url`` (checked by :meth:`package_url`); the key only to the server.

        Raises:
            InvalidInput: the URL is refused (see :meth:`package_url`).
            httpx.HTTPError: the transfer failed (callers translate it).
        """
        target, with_key = self.package_url(url)
        client = self.client if with_key else self._anonymous_client()
        with client.stream("GET", target, headers=headers) as response:
            yield response

    def _anonymous_client(self) -> httpx.Client:
        with self._lock:
            if self._anonymous is None:
                self._anonymous = httpx.Client(
                    transport=self._transport, timeout=httpx.Timeout(30.0)
                )
        return self._anonymous

    @property
    def client(self) -> httpx.Client:
        """The sync client (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(
                        base_url=self.base_url,
                        headers=self._headers,
                        transport=self._transport,
                        timeout=httpx.Timeout(30.0),
                    )
        return self._client

    @property
    def aclient(self) -> httpx.AsyncClient:
        """The async client (created on first use)."""
        if self._aclient is None:
            self._aclient = httpx.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                transport=self._async_transport,
                timeout=httpx.Timeout(30.0),
            )
        return self._aclient

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send one request; return a 2xx/3xx response or raise a pocketml error.

        The answer is read into memory up to ``MAX_ANSWER_BYTES`` (decoded); a longer one
        is refused, so a hostile server cannot exhaust the device's memory.

        Raises:
            Unavailable: network failure, timeout, or 5xx (``ServerError``).
            PocketMLError: any other error status (class from the status).
            InvalidInput: ``path`` is not a path on the server.
            IntegrityError: the answer is larger than ``MAX_ANSWER_BYTES``.
        """
        _check_path(path)
        try:
            sent = self.client.build_request(method, path, **kwargs)
            streamed = self.client.send(sent, stream=True)
            try:
                body = bytearray()
                for chunk in streamed.iter_bytes():
                    _append_bounded(body, chunk, path)
            finally:
                streamed.close()
        except httpx.HTTPError as exc:
            raise translate(exc, self.base_url) from exc
        return _answer(streamed, bytes(body))

    async def arequest(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Async twin of :meth:`request`."""
        _check_path(path)
        try:
            sent = self.aclient.build_request(method, path, **kwargs)
            streamed = await self.aclient.send(sent, stream=True)
            try:
                body = bytearray()
                async for chunk in streamed.aiter_bytes():
                    _append_bounded(body, chunk, path)
            finally:
                await streamed.aclose()
        except httpx.HTTPError as exc:
            raise translate(exc, self.base_url) from exc
        return _answer(streamed, bytes(body))

    def close(self) -> None:
        """Close the sync client (the async one is closed by :meth:`aclose`)."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._anonymous is not None:
            self._anonymous.close()
            self._anonymous = None

    async def aclose(self) -> None:
        """Close the async client."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: delay_i = d/2 + U(0, d/2), d = min(cap, base*2^i).

    Attributes:
        base_s: the first delay before jitter.
        cap_s: the largest delay.
    """

    base_s: float = 0.2
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before retry number ``attempt`` (0-based)."""
        full = min(self.cap_s, self.base_s * (2**attempt))
        return full / 2 + rng.random() * full / 2


class CircuitBreaker:
    """Stops calling a failing cloud: open after N consecutive failures, probe after a pause.

    States: "closed" (calls go through), "open" (calls are refused until ``cooldown_s``
    passed since it opened), "half-open" (one probe call is let through; its success
    closes the breaker, its failure opens it again for another cool-down).

    Args:
        failure_threshold: consecutive failures that open the breaker.
        cooldown_s: seconds an open breaker waits before letting one probe through.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float]
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """ "closed", "open" or "half-open"."""
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Ask before a call: True when it may go out (claims the probe when half-open)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._probing or self._clock() - self._opened_at < self.cooldown_s:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        """A call succeeded: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> None:
        """A call failed: count it; open (or re-open) the breaker at the threshold."""
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._probing = False
