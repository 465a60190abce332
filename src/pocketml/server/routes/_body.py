"""Reading JSON bodies: the one strict parser of every route, size-limited on device routes.

``parse_json`` is the only way a request body becomes Python values, for the device
routes that read their body themselves, the raw-ASGI fast path, multipart metadata, and
(through ``StrictJsonRoute``) every FastAPI route with a body model. It uses orjson with
no fallback, which refuses what could not be stored and read back: lone surrogates,
NaN / Infinity tokens, numbers that overflow a double (a 400-digit integer), and nesting
deeper than 1,024 levels (no ``RecursionError``). Such a body answers 400
``malformed_json`` naming the parser's reason; what remains (integers beyond 64 bits that
orjson reads as floats, NUL characters, long strings) is refused by the bounded types of
``pocketml.bounds`` with a 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from pocketml.errors import InvalidInput, MalformedJson, PayloadTooLarge

__all__ = [
    "MalformedJson",
    "StrictJsonRoute",
    "describe_errors",
    "parse_json",
    "read_body",
    "read_json",
]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """Read the body, at most ``max_bytes``.

    Raises:
        PayloadTooLarge: the body (or its Content-Length) is over ``max_bytes``.
        InvalidInput: the client disconnected mid-body.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(
            f"the body may be at most {max_bytes} bytes; Content-Length says {declared}. "
            "Send smaller batches."
        )
    chunks = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"the body may be at most {max_bytes} bytes; got more. Send smaller batches."
                )
            chunks.append(chunk)
    except ClientDisconnect as exc:  # nobody will read the answer; do not log a 500
        raise InvalidInput("the client disconnected before sending the whole body.") from exc
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """Read the body (at most ``max_bytes``) and parse it as JSON.

    Raises:
        PayloadTooLarge: the body (or its Content-Length) is over ``max_bytes``.
        MalformedJson: the body is not valid JSON.
    """
    return parse_json(await read_body(request, max_bytes))


def parse_json(body: bytes | str, what: str = "the request body") -> Any:
    """Parse JSON strictly (orjson, no fallback).

    Args:
        body: the raw bytes (or text).
        what: how the message names the document, e.g. "the 'metadata' part".

    Raises:
        MalformedJson: not JSON, or JSON that cannot round-trip (lone surrogates, NaN or
            Infinity tokens, numbers beyond a double, nesting deeper than 1,024 levels).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJson(
            f"{what} is not valid JSON ({exc}); send standard JSON (UTF-8, no NaN or "
            "Infinity, no lone surrogates, numbers within 64 bits) with "
            "Content-Type: application/json."
        ) from exc


class _StrictJsonRequest(Request):
    """A request whose ``json()`` is orjson (FastAPI's default is ``json.loads``)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # JSONDecodeError: FastAPI's 400
        return self._json


class StrictJsonRoute(APIRoute):
    """An APIRoute whose JSON body goes through the same strict parser as ``parse_json``.

    FastAPI parses body models with ``json.loads``, which accepts lone surrogates, NaN and
    400-digit integers; every router of the server uses this route class instead.
    ``orjson.JSONDecodeError`` subclasses ``json.JSONDecodeError``, so FastAPI still answers
    a malformed body with its ``json_invalid`` error (400 ``malformed_json``).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(_StrictJsonRequest(request.scope, request.receive))

        return strict_handler


def _where(loc: tuple[Any, ...], skip_tags: frozenset[str]) -> str:
    text = ""
    previous_was_index = False
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            previous_was_index = True
            continue
        if previous_was_index and part in skip_tags:  # the union member's tag
            previous_was_index = False
            continue
        text += f".{part}" if text else str(part)
        previous_was_index = False
    return text or "body"


def describe_errors(exc: ValidationError, skip_tags: frozenset[str] = frozenset()) -> str:
    """One clause per bad field, e.g. ``events[3].latency_ms: Input should be ... (got -1)``.

    Args:
        exc: the pydantic error.
        skip_tags: discriminator tags to leave out of locations ("inference", ...).

    Returns:
        The clauses joined with "; " (at most 20), ending with what to do.
    """
    clauses = []
    for error in exc.errors(include_url=False)[:20]:
        clause = f"{_where(tuple(error['loc']), skip_tags)}: {error['msg']}"
        if error.get("type") != "missing" and "input" in error:
            given = repr(error["input"])
            clause += f" (got {given[:60]}{'...' if len(given) > 60 else ''})"
        clauses.append(clause.replace("Value error, ", ""))
    return "; ".join(clauses) + ". Fix these fields and send the request again."
