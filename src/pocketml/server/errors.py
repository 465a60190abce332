"""HTTP mapping of errors: the catalog's statuses, ONE JSON shape, request ids.

The table error class <-> code <-> status is ``pocketml.protocol.ERROR_CATALOG`` (shared
with the admin client and the device SDK); ``STATUS_BY_ERROR`` is derived from it and
``public_error`` is the one place that decides what a client may read of a failure.

Every error response of the server has the body
``{"error": {"code": "...", "message": "...", "request_id": "..."}}`` and an
``X-Request-ID`` header. ``install_error_handlers(app)`` wires:

- ``PocketMLError`` subclasses -> the status of their catalog row (looked up along the
  exception's MRO, so a subclass inherits its parent's status);
- request validation errors -> 422 naming each bad field and what was expected, except a
  malformed JSON body -> 400;
- Starlette HTTP errors (unknown route 404, wrong method 405, ...) -> the same shape;
- anything else -> 500 with a generic message; the traceback is logged with the request id
  by ``RequestIdMiddleware``, which also generates or echoes ``X-Request-ID``.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pocketml import protocol
from pocketml.errors import MalformedJson, PocketMLError, RangeNotSatisfiable, ValidationFailed
from pocketml.protocol import status_for

__all__ = [
    "STATUS_BY_ERROR",
    "RangeNotSatisfiable",
    "RequestIdMiddleware",
    "error_response",
    "install_error_handlers",
    "public_error",
    "status_for",
]

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# 64 random bits per process, then a counter: unique across replicas and restarts, and
# ~10x cheaper than uuid4 on the hot path (which showed in profiles of predict).
_RID_PREFIX = secrets.token_hex(8)
_RID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id: 16 hex digits of this process, then a hex counter."""
    return f"{_RID_PREFIX}{next(_RID_COUNTER):08x}"


# Derived from ``pocketml.protocol.ERROR_CATALOG`` (the one table), for readers of the server.
STATUS_BY_ERROR: dict[type[PocketMLError], int] = {
    row.error: row.status for row in protocol.ERROR_CATALOG
}
_INTERNAL = "internal error; quote request id {rid} when reporting it."


def public_error(exc: BaseException, rid: str, where: str = "") -> tuple[int, str, str]:
    """The (status, code, message) a client sees for ``exc``; internal failures masked.

    A 5xx other than ``Unavailable`` / ``MissingDependencyError`` (and any exception
    outside the pocketml tree) is logged with its traceback and the request id, and
    answered with a generic message that quotes the id.

    Args:
        exc: the exception the request failed with.
        rid: the request id.
        where: ``"METHOD /path"`` for the log line of a foreign exception.

    Returns:
        The status, code and message of the error answer.
    """
    if not isinstance(exc, PocketMLError):
        logger.error("request %s %s failed", rid, where, exc_info=exc)
        return 500, "internal_error", _INTERNAL.format(rid=rid)
    status = status_for(exc)
    if protocol.is_masked(exc):
        logger.error("request %s failed: %s", rid, exc, exc_info=exc)
        return status, exc.code, _INTERNAL.format(rid=rid)
    return status, exc.code, str(exc) or exc.code


def request_id_of(request: Request) -> str:
    """The id ``RequestIdMiddleware`` gave this request (or a fresh one outside it)."""
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else new_request_id()


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Build the one JSON error shape.

    Args:
        status: HTTP status code.
        code: stable machine-readable code.
        message: a sentence for people (what was expected, given, what to do).
        request_id: the request id, echoed in the body and the ``X-Request-ID`` header.
        headers: extra response headers.

    Returns:
        A ``JSONResponse``.
    """
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    all_headers = {REQUEST_ID_HEADER: request_id, **(headers or {})}
    return JSONResponse(status_code=status, content=body, headers=all_headers)


def _describe_location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        where, rest = parts[0], parts[1:]
        return f"{where} field '{'.'.join(rest)}'" if rest else f"the request {where}"
    return f"field '{'.'.join(parts)}'"


def describe_request_errors(errors: list[dict[str, Any]] | Any) -> str:
    """One clause per bad field: where, what was expected, what was given.

    Args:
        errors: ``RequestValidationError.errors()`` (pydantic error dicts).

    Returns:
        A message such as "body field 'name': String should match pattern ... (got 'X')".
    """
    clauses = []
    for error in list(errors)[:20]:
        where = _describe_location(error.get("loc", ()))
        msg = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        clause = f"{where}: {msg}"
        if "input" in error and error.get("type") != "missing":
            given = repr(error["input"])
            clause += f" (got {given[:80]}{'...' if len(given) > 80 else ''})"
        clauses.append(clause)
    return "; ".join(clauses) + ". Fix the request and send it again."


async def _pocketml_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PocketMLError)
    rid = request_id_of(request)
    status, code, message = public_error(exc, rid)
    if _console(request):
        return await _console_error(request, status, message)
    headers: dict[str, str] = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="pocketml"'
    if isinstance(exc, RangeNotSatisfiable) and exc.size is not None:
        headers["Content-Range"] = f"bytes */{exc.size}"
    return error_response(status, code, message, rid, headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    rid = request_id_of(request)
    if _console(request):
        return await _console_error(request, 422, describe_request_errors(errors))
    invalid = [error for error in errors if error.get("type") == "json_invalid"]
    if invalid:
        reason = (invalid[0].get("ctx") or {}).get("error")
        return error_response(
            status_for(MalformedJson),
            MalformedJson.code,
            f"the request body is not valid JSON{f' ({reason})' if reason else ''}; send "
            "standard JSON (UTF-8, no NaN or Infinity, no lone surrogates, numbers within "
            "64 bits) with Content-Type: application/json.",
            rid,
        )
    failure = ValidationFailed(describe_request_errors(errors))
    return error_response(status_for(failure), failure.code, str(failure), rid)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    rid = request_id_of(request)
    code = protocol.http_code(exc.status_code)
    if _console(request) and exc.status_code in (404, 405):
        message = (
            "There is no such page in the console."
            if exc.status_code == 404
            else f"{request.method} is not allowed here."
        )
        return await _console_error(request, exc.status_code, message)
    if exc.status_code == 404:
        message = f"no route {request.url.path!r}; see /docs for the API."
    elif exc.status_code == 405:
        message = (
            f"method {request.method} is not allowed on {request.url.path!r}; "
            f"allowed: {(exc.headers or {}).get('allow', '?')}."
        )
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, rid, dict(exc.headers or {}))


def _console(request: Request) -> bool:
    path = request.url.path
    return path == "/ui" or path.startswith("/ui/")


async def _console_error(request: Request, status: int, message: str) -> Response:
    """A failed console request answers an HTML page, not the API's JSON envelope."""
    from pocketml.server.console import html_error

    return await html_error(request, status, message)


def install_error_handlers(app: FastAPI) -> None:
    """Register every error handler of the table above on ``app``.

    Args:
        app: the FastAPI application.
    """
    app.add_exception_handler(PocketMLError, _pocketml_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class RequestIdMiddleware:
    """Give each request an id (echo a sane ``X-Request-ID``, else generate one).

    The id is stored in ``request.state.request_id`` and sent back as a header. An
    exception that no handler caught is logged with its traceback and answered with a
    generic 500 in the error shape (unless the response had already started).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _REQUEST_ID_OK.match(given) else new_request_id()
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            status, code, message = public_error(exc, rid, f"{scope.get('method')} {scope['path']}")
            if started:
                raise
            response = error_response(status, code, message, rid)
            await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None
