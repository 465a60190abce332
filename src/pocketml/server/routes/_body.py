"""Reading JSON bodies of the hot device routes: size-limited, parsed with orjson."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import Request
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from pocketml.errors import InvalidInput, PayloadTooLarge

__all__ = ["MalformedJson", "describe_errors", "parse_json", "read_body", "read_json"]


class MalformedJson(InvalidInput):
    """The body is not JSON (HTTP 400, code ``malformed_json``)."""

    code = "malformed_json"


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


def parse_json(body: bytes) -> Any:
    """Parse a request body as JSON (orjson; NaN / Infinity tokens via the json module).

    Raises:
        MalformedJson: the body is not valid JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # NaN / Infinity tokens: parse them so the schema check can name the problem
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJson(
            "the request body is not valid JSON; send a JSON object with "
            "Content-Type: application/json."
        ) from exc


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
