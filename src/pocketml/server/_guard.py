"""The request guard: header, body, media-type and token-presence limits before any work.

FastAPI reads and validates a body before it runs dependencies, and authentication is a
dependency: a 100 MB JSON body without a token used to be parsed on the event loop
(``/healthz`` stalled for seconds, ~900 MiB RSS) before anyone asked who sent it. The
guard is the outermost ASGI layer (``PocketMLApp.__call__`` calls it first, so it covers
the fast path and FastAPI alike) and refuses, in this order and before a body byte is
read:

1. 431 ``headers_too_large``: more headers than ``max_header_count``, one value longer
   than ``max_header_value_bytes``, or more than ``max_header_bytes`` in total;
2. 413 ``payload_too_large``: a ``Content-Length`` over the route's limit (a chunked body
   is counted as it streams, and cut at the limit with the same answer);
3. 415 ``unsupported_media_type``: a body that is not ``application/json`` on a JSON route,
   or not ``multipart/form-data`` on the version push; a ``Content-Encoding`` other than
   gzip on the device routes that inflate (check-in, feedback, predict, telemetry), or any
   but ``identity`` elsewhere;
4. 401 ``unauthorized``: a ``/v1`` route without a well-formed ``Authorization: Bearer``
   (not the package downloads: a public app's packages need no key).

Token *verification* stays in the routes: with the body bounded, a wrong token costs at
most one bounded read. A gzip body is inflated while the app reads it, within the same
limit (``_gzip.py``: 413 after at most ``limit + 1`` inflated bytes, 400
``malformed_gzip`` for bytes that are not gzip), so the handlers only see plain JSON.
``Limits.route_class`` is the one table route -> limit, built from the settings once,
when the app is built (docs/protocol.md "Limits" lists it, and
tests/server/test_limits.py checks it against every route of the OpenAPI document).
The check is one pass over the header list with no allocation for a request that passes
and declares its length (measured in-process: about 1.2 us of CPU per request on the
2-core test machine, where a check-in answered 304 costs about 13 us).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from starlette.types import Message, Receive, Scope, Send

from pocketml.config import LimitsSettings
from pocketml.errors import (
    HeadersTooLarge,
    PayloadTooLarge,
    PocketMLError,
    Unauthorized,
    UnsupportedMediaType,
)
from pocketml.server._gzip import GZIP, IDENTITY, Inflater, encoding_of
from pocketml.server.errors import _REQUEST_ID_OK, new_request_id, status_for

__all__ = ["Limits", "RequestGuard", "RouteClass", "send_error", "send_json"]

_JSON = b"application/json"
_MULTIPART = b"multipart/form-data"
_OCTETS = b"application/octet-stream"
_MAX_LENGTH_DIGITS = 15  # 10^15 bytes is over every limit; int() of more is pointless


@dataclass(frozen=True, slots=True)
class RouteClass:
    """What one class of routes accepts: body size, media type, whether a token is due,
    whether a gzip body is inflated."""

    name: str
    max_body: int
    media_type: bytes | None  # None: any (or none)
    needs_token: bool
    setting: str  # the setting that raises ``max_body``, named in the 413 message
    inflates: bool = False  # takes Content-Encoding: gzip (inflated within ``max_body``)


@dataclass(frozen=True)
class Limits:
    """Every request limit, in bytes, read once from ``LimitsSettings``."""

    header_count: int
    header_value_bytes: int
    header_bytes: int
    header_scan_bytes: int  # min(header_value_bytes, header_bytes): below it, all is well
    admin: RouteClass
    device: RouteClass
    telemetry: RouteClass
    predict: RouteClass
    push: RouteClass
    other: RouteClass
    samples: RouteClass | None = None  # POST /v1/samples (None: the admin class)
    federated: RouteClass | None = None  # /v1/federated/... JSON (None: the admin class)
    federated_update: RouteClass | None = None  # PUT /v1/federated/.../update: octet-stream

    @classmethod
    def from_settings(cls, server: LimitsSettings) -> Limits:
        """The limits of ``server`` (``POCKETML_SERVER__LIMITS__MAX_*``)."""
        kib = 1024
        return cls(
            header_count=server.max_header_count,
            header_value_bytes=server.max_header_value_bytes,
            header_bytes=server.max_header_bytes,
            header_scan_bytes=min(server.max_header_value_bytes, server.max_header_bytes),
            admin=RouteClass(
                "admin", server.max_admin_body_kb * kib, _JSON, True, "LIMITS__MAX_ADMIN_BODY_KB"
            ),
            device=RouteClass(
                "device",
                server.max_device_body_kb * kib,
                _JSON,
                True,
                "LIMITS__MAX_DEVICE_BODY_KB",
                inflates=True,
            ),
            telemetry=RouteClass(
                "telemetry",
                server.max_telemetry_bytes,
                _JSON,
                True,
                "LIMITS__MAX_TELEMETRY_BODY_KB",
                inflates=True,
            ),
            predict=RouteClass(
                "predict",
                server.max_predict_body_kb * kib,
                _JSON,
                True,
                "LIMITS__MAX_PREDICT_BODY_KB",
                inflates=True,
            ),
            push=RouteClass(
                "push",
                int(server.max_upload_mb * kib * kib),
                _MULTIPART,
                True,
                "LIMITS__MAX_UPLOAD_MB",
            ),
            other=RouteClass(
                "other", server.max_admin_body_kb * kib, None, False, "LIMITS__MAX_ADMIN_BODY_KB"
            ),
            samples=RouteClass(
                "samples",
                server.max_samples_body_kb * kib,
                _JSON,
                True,
                "LIMITS__MAX_SAMPLES_BODY_KB",
                inflates=True,
            ),
            federated=RouteClass(
                "federated",
                server.max_device_body_kb * kib,
                _JSON,
                True,
                "LIMITS__MAX_DEVICE_BODY_KB",
            ),
            federated_update=RouteClass(
                "federated update",
                server.max_device_body_kb * kib,
                _OCTETS,
                True,
                "LIMITS__MAX_DEVICE_BODY_KB",
            ),
        )

    def route_class(self, method: str, path: str) -> RouteClass:
        """The class of ``method path``: device (check-in, feedback, keys), telemetry,
        predict, push (the version upload), admin (every other ``/v1`` route) or other
        (``/healthz``, ``/docs``, ``/ui``: no token, no media type)."""
        if not path.startswith("/v1/") or path.startswith("/v1/packages/"):
            return self.other  # packages: a public app's are fetched without a key
        if path == "/v1/checkin" or path == "/v1/feedback" or path.startswith("/v1/keys/"):
            return self.device
        if path == "/v1/telemetry":
            return self.telemetry
        if path == "/v1/samples" and self.samples is not None:
            return self.samples
        if path.startswith("/v1/federated/") and self.federated is not None:
            if path.endswith("/update") and self.federated_update is not None:
                return self.federated_update
            return self.federated
        if path.startswith("/v1/models/") and path.endswith("/predict"):
            return self.predict
        if (
            method == "POST"
            and path.startswith("/v1/admin/models/")
            and path.endswith("/versions")
            and path.count("/") == 5
        ):
            return self.push
        return self.admin


class RequestGuard:
    """Enforces ``Limits`` on an HTTP request from its scope, before the app sees it.

    Not a middleware of its own: ``PocketMLApp.__call__`` asks ``inspect`` first and
    then dispatches in the same frame, which keeps an extra coroutine layer off the fast
    path.

    Args:
        limits: the limits, from ``Limits.from_settings``.
        has_route: whether a route answers this method and path; asked only for a
            request without a token, so that an unknown route still answers 404 (and a
            wrong method 405), without reading the body either.
    """

    def __init__(self, limits: Limits, has_route: Callable[[Scope], bool]) -> None:
        self.limits = limits
        self.has_route = has_route

    def inspect(self, scope: Scope) -> PocketMLError | RouteClass | None:
        """The verdict on an HTTP request, from its method, path and headers alone.

        Returns:
            None: let it through untouched (no body, or a declared length within the
            limit: the server stops at ``Content-Length``); a ``RouteClass``: let it
            through with ``bounded`` counting its chunked body against the class's
            limit and inflating a gzip body; an error: answer it with ``refuse``.
        """
        limits = self.limits
        headers = scope["headers"]
        length: bytes | None = None
        content_type: bytes | None = None
        authorization: bytes | None = None
        encoding: bytes | None = None
        chunked = False
        total = 0
        if len(headers) <= limits.header_count:
            for name, value in headers:  # lower-case names (ASGI); one pass, no allocation
                total += len(name) + len(value)
                if name in _WATCHED:
                    if name == b"content-length":
                        length = value
                    elif name == b"content-type":
                        content_type = value
                    elif name == b"authorization":
                        authorization = value
                    elif name == b"content-encoding":
                        encoding = value
                    else:
                        chunked = True
        problem: PocketMLError | None = None
        if total > limits.header_scan_bytes or len(headers) > limits.header_count:
            # Only a large head pays for a second walk: no value can be too long while
            # all of them together are shorter than the limit of one.
            problem = _header_problem(limits, headers, total)
        if problem is None:
            route = limits.route_class(scope["method"], scope["path"])
            gzip = False
            if length is not None or chunked:
                problem = _body_problem(route, length, chunked, content_type)
                if problem is None and encoding is not None:
                    problem, gzip = _encoding_problem(route, encoding, length, chunked)
            if problem is None and route.needs_token and not _is_bearer(authorization):
                problem = _NO_TOKEN if self.has_route(scope) else None
            if problem is None:
                return route if chunked or gzip else None
        return problem

    @staticmethod
    def bounded(
        scope: Scope, receive: Receive, send: Send, route: RouteClass
    ) -> tuple[Receive, Send]:
        """``receive`` and ``send`` that cut a chunked body at ``route.max_body`` (413)
        and inflate a gzip body within it (413, or 400 ``malformed_gzip``).

        A gzip request's scope loses its ``Content-Encoding`` and ``Content-Length``
        headers: what the app reads is the inflated body, of another length.
        """
        inflater = None
        if route.inflates:
            headers = scope["headers"]
            for name, value in headers:
                if name == b"content-encoding" and encoding_of(value) == GZIP:
                    problem = _too_large(route, "the gzip body inflates to more")
                    inflater = Inflater(route.max_body, problem)
                    scope["headers"] = [h for h in headers if h[0] not in _INFLATED_AWAY]
                    break
        body = _BoundedBody(scope, receive, send, route, inflater)
        return body.receive, body.send

    @staticmethod
    async def refuse(scope: Scope, send: Send, problem: PocketMLError) -> None:
        """Answer ``problem`` in the one error shape and close the connection."""
        await send_error(send, problem, _request_id(scope["headers"]), close=True)


_WATCHED = frozenset(
    {
        b"content-length",
        b"content-type",
        b"authorization",
        b"content-encoding",
        b"transfer-encoding",
    }
)
_INFLATED_AWAY = frozenset({b"content-encoding", b"content-length"})


def _header_problem(
    limits: Limits, headers: list[tuple[bytes, bytes]], total: int
) -> HeadersTooLarge | None:
    """Which header limit ``headers`` break, if any (only large heads pay for this walk)."""
    if len(headers) > limits.header_count:
        return HeadersTooLarge(
            f"a request may carry at most {limits.header_count} headers; got "
            f"{len(headers)}. Send fewer headers."
        )
    for name, value in headers:
        if len(value) > limits.header_value_bytes:
            shown = name.decode("latin-1")[:64]
            return HeadersTooLarge(
                f"a request header value may hold at most {limits.header_value_bytes} bytes; "
                f"{shown!r} has {len(value)}. Send a shorter value."
            )
    if total <= limits.header_bytes:
        return None
    return HeadersTooLarge(
        f"request headers may hold at most {limits.header_bytes} bytes in total; got "
        f"{total}. Send fewer or shorter headers."
    )


def _body_problem(
    route: RouteClass,
    length: bytes | None,
    chunked: bool,
    content_type: bytes | None,
) -> PocketMLError | None:
    """Why a request of ``route`` with this body is refused (413, 415), or None."""
    declared = 0
    if length is not None and length.isdigit():
        declared = int(length) if len(length) <= _MAX_LENGTH_DIGITS else route.max_body + 1
        if declared > route.max_body:
            return _too_large(route, f"Content-Length says {declared}")
    media = route.media_type
    if (declared or chunked) and media is not None and content_type != media:
        given = (content_type or b"").partition(b";")[0].strip().lower()
        if given != media:
            shown = content_type.decode("latin-1")[:80] if content_type else "none"
            return UnsupportedMediaType(
                f"this route takes a body of Content-Type {media.decode()}; got {shown!r}. "
                f"Send the body with Content-Type: {media.decode()}."
            )
    return None


def _encoding_problem(
    route: RouteClass, encoding: bytes, length: bytes | None, chunked: bool
) -> tuple[UnsupportedMediaType | None, bool]:
    """(why a body with this ``Content-Encoding`` is refused, or None; whether to inflate)."""
    kind = encoding_of(encoding)
    if kind == IDENTITY:
        return None, False
    if kind == GZIP and route.inflates:
        return None, chunked or (length is not None and length.strip(b"0") != b"")
    shown = encoding.decode("latin-1")[:40]
    if route.inflates:
        return UnsupportedMediaType(
            f"this route takes a body with Content-Encoding gzip or none; got {shown!r}. "
            "Send the body gzip-compressed or uncompressed."
        ), False
    return UnsupportedMediaType(
        f"this route takes an uncompressed body; got Content-Encoding {shown!r}. Send the "
        "body without Content-Encoding."
    ), False


_NO_TOKEN = Unauthorized(
    "this route needs a token; send 'Authorization: Bearer <token>' (the app's device key "
    "on device routes, its admin token on admin routes)."
)


def _is_bearer(authorization: bytes | None) -> bool:
    """Whether the header is ``Bearer <token>`` (scheme case-insensitive), like HTTPBearer."""
    if not authorization:
        return False
    if authorization.startswith(b"Bearer "):  # the usual spelling: no copy
        return len(authorization.rstrip()) > 7
    scheme, _, token = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and bool(token.strip())


def _too_large(route: RouteClass, given: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the body of this route may hold at most {route.max_body} bytes; {given}. Send a "
        f"smaller body (the server's limit is POCKETML_SERVER__{route.setting})."
    )


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID_OK.match(given):
                return given
            break
    return new_request_id()


class _BoundedBody:
    """``receive``/``send`` of a chunked request: the body is cut at the route's limit.

    Past the limit the guard answers 413 itself (closing the connection, so the rest is
    never read), tells the app the client went away, and drops whatever the app answers
    after that: intermediate layers would otherwise turn the error into their own.
    """

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: RouteClass,
        inflater: Inflater | None = None,
    ) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._route = route
        self._inflater = inflater
        self._received = 0
        self._started = False
        self._answered = False

    async def receive(self) -> Message:
        if self._answered:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            self._received += len(chunk)
            problem: PocketMLError | None = None
            if self._received > self._route.max_body:
                problem = _too_large(self._route, "the chunked body sent more")
            elif self._inflater is not None:
                more = message.get("more_body", False)
                try:
                    chunk = self._inflater.feed(chunk)
                    if not more:
                        self._inflater.finish()
                except PocketMLError as exc:
                    problem = exc
                message = {"type": "http.request", "body": chunk, "more_body": more}
            if problem is not None:
                if not self._started:
                    rid = _request_id(self._scope["headers"])
                    await send_error(self._send, problem, rid, close=True)
                self._answered = True
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self._answered:
            return
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    rid: str,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole JSON answer (a 304 gets no body headers, RFC 9110 15.4.5)."""
    if status == 304:
        headers = [(b"x-request-id", rid.encode()), *extra]
    else:
        headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", rid.encode()),
            *extra,
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send,
    problem: PocketMLError | tuple[int, str, str],
    rid: str,
    *,
    close: bool = False,
) -> None:
    """Send the one error shape for ``problem`` (an error, or (status, code, message)).

    Args:
        send: the ASGI send.
        problem: the error; its status comes from ``STATUS_BY_ERROR``.
        rid: the request id, echoed in the body and ``X-Request-ID``.
        close: ask the server to close the connection (an unread body follows).
    """
    if isinstance(problem, PocketMLError):
        status, code, message = status_for(problem), problem.code, str(problem)
    else:
        status, code, message = problem
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": rid}})
    extra = [(b"www-authenticate", b'Bearer realm="pocketml"')] if status == 401 else []
    if close:
        extra.append((b"connection", b"close"))
    await send_json(send, status, body, rid, extra)
