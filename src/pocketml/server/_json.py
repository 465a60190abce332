"""Strict JSON in, clear messages out: the one body parser and the pydantic error describer.

``parse_json`` is the only way a request body becomes Python values: for the device
handlers (``device_api``, behind both the fast path and the FastAPI routes), multipart
metadata, and (through ``routes/_body.StrictJsonRoute``) every FastAPI route with a body
model. It uses orjson with no fallback, which refuses what could not be stored and read
back: lone surrogates, NaN / Infinity tokens, numbers that overflow a double (a
400-digit integer), and nesting deeper than 1,024 levels (no ``RecursionError``). Such a
body answers 400 ``malformed_json`` naming the parser's reason; what remains (integers
beyond 64 bits that orjson reads as floats, NUL characters, long strings) is refused by
the bounded types of ``pocketml.bounds`` with a 422 naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from pocketml.errors import MalformedJson

__all__ = ["describe_errors", "parse_json"]


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
