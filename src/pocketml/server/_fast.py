"""A raw ASGI fast path for the hottest device routes, in front of the FastAPI app.

``POST /v1/checkin``, ``POST /v1/models/{name}/predict`` and ``POST /v1/telemetry``
carry the fleet's load; going through Starlette's middleware stack and FastAPI's
dependency solver costs more than the work itself. ``PocketMLApp`` answers them
directly: it picks the headers a handler needs, authenticates, reads the body and sends
the ``Answer`` of the same ``device_api`` handler the FastAPI routes call (those stay
defined for the OpenAPI document and answer everything the fast path does not take).
Errors get the one shape ``{"error": {"code", "message", "request_id"}}`` with the
catalog's statuses and the ``X-Request-ID`` echo. Anything else falls through untouched.
Measured in-process (benchmarks/frontdoor_overhead.py, 2-core test machine): a check-in
answered 304 costs about 19 us of CPU here, a one-sample predict about 75 us. With
``GET /metrics`` enabled every request, on both doors, is counted by one
``ServerMetrics.observe`` call here: about 2 us more (benchmarks/metrics_overhead.py).
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from pocketml.server._guard import Limits, RequestGuard, RouteClass, send_error, send_json
from pocketml.server._metrics import REFUSED, UNMATCHED, ServerMetrics
from pocketml.server._state import ServerState
from pocketml.server.device_api import (
    answer_checkin,
    answer_predict,
    answer_telemetry,
    authenticate_device,
    bearer_token,
    read_body,
)
from pocketml.server.errors import _REQUEST_ID_OK, new_request_id, public_error, status_for

__all__ = ["PocketMLApp"]

_PREDICT_PREFIX = "/v1/models/"
_PREDICT_SUFFIX = "/predict"
_TELEMETRY = "/v1/telemetry"
_CHECKIN = "/v1/checkin"
_PREDICT_ROUTE = "/v1/models/{name}/predict"  # the template FastAPI's route declares


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

    Attributes:
        fast_path: False sends every request (after the guard) through FastAPI, so a
            test can check that both doors answer alike.
        metrics: the request metrics (``GET /metrics``), or None when they are off:
            then no clock is read and no status is captured.
    """

    def __init__(self, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self.fast_path = True
        self.metrics: ServerMetrics | None = None
        self._guard = RequestGuard(limits, self._has_route)

    def _has_route(self, scope: Scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point: the guard, then the fast path, then FastAPI."""
        if scope["type"] == "http":
            metrics = self.metrics
            start = perf_counter() if metrics is not None else 0.0
            verdict = self._guard.inspect(scope)
            if verdict is not None:
                if not isinstance(verdict, RouteClass):
                    await self._guard.refuse(scope, send, verdict)
                    if metrics is not None:
                        elapsed = perf_counter() - start
                        metrics.observe(scope["method"], REFUSED, status_for(verdict), elapsed)
                    return
                receive, send = self._guard.bounded(scope, receive, send, verdict)
            if scope["method"] == "POST" and self.fast_path:
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
                        status, events = await _serve(
                            scope, receive, send, state, self.limits, name
                        )
                        if metrics is not None:
                            route = path if name is None else _PREDICT_ROUTE
                            metrics.observe("POST", route, status, perf_counter() - start, events)
                        return
            if metrics is not None:
                await self._call_counted(scope, receive, send, metrics, start)
                return
        await super().__call__(scope, receive, send)

    async def _call_counted(
        self, scope: Scope, receive: Receive, send: Send, metrics: ServerMetrics, start: float
    ) -> None:
        """FastAPI's answer, counted under the template of the route that answered."""
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) if route is not None else None
            label = template if isinstance(template, str) else UNMATCHED
            metrics.observe(scope["method"], label, status, perf_counter() - start)


async def _serve(
    scope: Scope,
    receive: Receive,
    send: Send,
    state: ServerState,
    limits: Limits,
    name: str | None,
) -> tuple[int, int]:
    """Answer one fast-path request; return (status, telemetry events stored)."""
    authorization = None
    given_rid = None
    if_none_match = None
    sent_date = None
    for key, value in scope["headers"]:  # ASGI servers give header names in lower case
        if key == b"authorization":
            authorization = value.decode("latin-1")
        elif key == b"x-request-id":
            given_rid = value.decode("latin-1")
        elif key == b"if-none-match":
            if_none_match = value.decode("latin-1")
        elif key == b"date":
            sent_date = value.decode("latin-1")
    rid = given_rid if given_rid and _REQUEST_ID_OK.match(given_rid) else new_request_id()
    try:
        principal = await authenticate_device(state, bearer_token(authorization))
        if name is not None:
            body = await read_body(receive, limits.predict.max_body)
            answer = await answer_predict(state, principal, name, body)
        elif scope["path"] == _CHECKIN:
            body = await read_body(receive, limits.device.max_body)
            answer = await answer_checkin(state, principal, body, if_none_match)
        else:
            body = await read_body(receive, limits.telemetry.max_body)
            answer = await answer_telemetry(state, principal, body, sent_date)
    except Exception as exc:
        where = f"{scope.get('method')} {scope['path']}"
        error = public_error(exc, rid, where)
        await send_error(send, error, rid)
        return error[0], 0
    await send_json(send, answer.status, answer.body, rid, answer.headers)
    return answer.status, answer.events
