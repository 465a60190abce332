"""A raw ASGI fast path for the hottest device routes, in front of the FastAPI app.

``POST /v1/checkin``, ``POST /v1/models/{name}/predict`` and ``POST /v1/telemetry``
carry the fleet's load; going through Starlette's middleware stack and FastAPI's
dependency solver costs more than the work itself. ``PocketMLApp`` answers them
directly with the same semantics as the FastAPI routes (which stay defined for the
OpenAPI document and answer everything the fast path does not take): bearer auth with
the cached verification, the error shape ``{"error": {"code", "message",
"request_id"}}`` with the same statuses, the ``X-Request-ID`` echo, orjson in and out.
Anything else falls through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson
from anyio import to_thread
from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from pocketml.errors import (
    InvalidInput,
    MalformedJson,
    PayloadTooLarge,
    PocketMLError,
    ValidationFailed,
)
from pocketml.server._guard import Limits, RequestGuard, RouteClass, send_error, send_json
from pocketml.server._state import ServerState
from pocketml.server.errors import _REQUEST_ID_OK, new_request_id, public_error
from pocketml.server.routes._body import parse_json
from pocketml.server.routes._device_auth import authenticate_device, bearer_token
from pocketml.server.routes.device import answer_checkin
from pocketml.server.routes.predict import parse_predict_body
from pocketml.server.routes.telemetry import validate_body

__all__ = ["PocketMLApp"]

_PREDICT_PREFIX = "/v1/models/"
_PREDICT_SUFFIX = "/predict"
_TELEMETRY = "/v1/telemetry"
_CHECKIN = "/v1/checkin"


class PocketMLApp(FastAPI):
    """The FastAPI app, answering check-in, predict and telemetry before its ASGI stack.

    ``__call__`` is the outermost ASGI entry point: a middleware added with
    ``add_middleware`` would still sit inside Starlette's error and FastAPI's telemetry
    middlewares, which cost about a tenth of a predict call. Every request first passes
    the ``RequestGuard`` (header, body, media-type and token-presence limits); then the
    fast path takes its routes, and everything else, and these routes before the
    lifespan has run (FastAPI answers 503), goes to FastAPI.

    Args:
        limits: the request limits (``Limits.from_settings(settings.server)``).
        **kwargs: FastAPI's arguments.
    """

    def __init__(self, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self._guard = RequestGuard(limits, self._has_route)

    def _has_route(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: the guard, then the fast path, then FastAPI."""
        if scope["type"] == "http":
            verdict = self._guard.inspect(scope)
            if verdict is not None:
                if not isinstance(verdict, RouteClass):
                    await self._guard.refuse(scope, send, verdict)
                    return
                receive, send = self._guard.bounded(scope, receive, send, verdict)
            if scope["method"] == "POST":
                path: str = scope["path"]
                name = None
                if path.startswith(_PREDICT_PREFIX) and path.endswith(_PREDICT_SUFFIX):
                    name = path[len(_PREDICT_PREFIX) : -len(_PREDICT_SUFFIX)]
                    if not name or "/" in name or len(name) > 64:
                        name = None  # FastAPI answers these (404 / 422) in its own words
                if name is not None or path in (_TELEMETRY, _CHECKIN):
                    state = getattr(self.state, "pocketml", None)
                    if isinstance(state, ServerState):
                        scope["app"] = self
                        await _serve(scope, receive, send, state, self.limits, name)
                        return
        await super().__call__(scope, receive, send)


async def _serve(
    scope: Scope,
    receive: Receive,
    send: Send,
    state: ServerState,
    limits: Limits,
    name: str | None,
) -> None:
    authorization = None
    given_rid = None
    length = None
    if_none_match = None
    for key, value in scope["headers"]:  # ASGI servers give header names in lower case
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"x-request-id":
            given_rid = value.decode("latin-1")
        elif key == b"content-length":
            length = value
        elif key == b"if-none-match":
            if_none_match = value.decode("latin-1")
    rid = given_rid if given_rid and _REQUEST_ID_OK.match(given_rid) else new_request_id()
    try:
        principal = await authenticate_device(state, bearer_token(authorization))
        extra: list[tuple[bytes, bytes]] = []
        if name is not None:
            body = await _read_body(receive, length, limits.predict.max_body)
            status, answer = 200, await _predict(state, principal.app_id, name, body)
        elif scope["path"] == _CHECKIN:
            body = await _read_body(receive, length, limits.device.max_body)
            status, answer, extra = await _checkin(state, principal.app_id, body, if_none_match)
        else:
            body = await _read_body(receive, length, limits.telemetry.max_body)
            status, answer = await _telemetry(state, principal.app_id, body)
    except Exception as exc:
        where = f"{scope.get('method')} {scope['path']}"
        await send_error(send, public_error(exc, rid, where), rid)
    else:
        await send_json(send, status, answer, rid, extra)


async def _checkin(
    state: ServerState, app_id: str, body: bytes, if_none_match: str | None
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    status, answer, etag = await answer_checkin(state, app_id, body, if_none_match)
    headers = [(b"etag", f'"{etag}"'.encode()), (b"cache-control", b"private, no-cache")]
    return status, answer, headers


async def _predict(state: ServerState, app_id: str, name: str, body: bytes) -> bytes:
    try:
        inputs, prediction_id = parse_predict_body(parse_json(body))
        return await state.serving.predict(app_id, name, inputs, prediction_id)
    except MalformedJson:
        raise
    except InvalidInput as exc:  # the schema check: 422, like the FastAPI route
        raise ValidationFailed.of(exc) from exc


async def _telemetry(state: ServerState, app_id: str, body: bytes) -> tuple[int, bytes]:
    batch = validate_body(body, state.max_telemetry_events)
    result = await to_thread.run_sync(state.telemetry.ingest, app_id, batch)
    answer = orjson.dumps({"accepted": result.accepted, "duplicate": result.duplicate})
    return (200 if result.duplicate else 202), answer


async def _read_body(receive: Receive, declared: bytes | None, max_bytes: int) -> bytes:
    """The whole body, at most ``max_bytes`` (same checks and messages as ``read_body``)."""
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, f"Content-Length says {declared.decode()}")
    message: Message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > max_bytes:
            raise _too_large(max_bytes, "got more")
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes, "got more")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def _too_large(max_bytes: int, given: str) -> PocketMLError:
    return PayloadTooLarge(
        f"the body may be at most {max_bytes} bytes; {given}. Send smaller batches."
    )
