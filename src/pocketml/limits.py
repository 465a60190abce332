"""The bounds of a value that can be stored, serialised and read back, without pydantic.

A value that passes validation is stored (SQLite, PostgreSQL JSONB and text columns) and
later written out with orjson on every read, so validation must refuse what any of those
cannot hold: integers beyond 64 bits, NaN and infinities, strings with lone surrogates or
NUL characters, unbounded nesting. ``pocketml.bounds`` turns these checks into pydantic
types for the server's models; ``pocketml.schema`` (which the device SDK imports, without
pydantic) calls them directly. Standard library only.
"""

from __future__ import annotations

import math
from dataclasses import is_dataclass
from typing import Any

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "MAX_JSON_NODES",
    "check_text",
    "check_value",
    "find_problem",
]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_JSON_DEPTH = 32
MAX_JSON_NODES = 100_000


def _text_problem(value: str) -> str | None:
    if value.isascii():
        return "contains a NUL character" if "\x00" in value else None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it holds a lone surrogate)"
    return "contains a NUL character" if "\x00" in value else None


def check_text(value: str) -> str:
    """Return ``value`` when it can be stored and encoded (no lone surrogate, no NUL).

    Raises:
        ValueError: naming what is wrong (pydantic turns it into a 422 naming the field).
    """
    problem = _text_problem(value)
    if problem is not None:
        raise ValueError(f"the text {problem}; send valid UTF-8 text without NUL characters")
    return value


def find_problem(value: Any, depth: int, budget: list[int]) -> tuple[str, str] | None:
    """(where, what) of the first value that cannot round-trip, or None.

    Args:
        value: the value to walk.
        depth: its nesting depth (0 at the top).
        budget: ``[values still allowed]``, shared by the whole walk (decremented).
    """
    budget[0] -= 1
    if budget[0] < 0:
        return "", f"holds more than {MAX_JSON_NODES} values; send less"
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            digits = len(str(abs(value))) if abs(value) < 10**4000 else 4000
            return "", f"is an integer of {digits} digits; integers must fit in 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", f"must be a finite number; got {value}")
    if isinstance(value, str):
        problem = _text_problem(value)
        return None if problem is None else ("", f"{problem}; send valid UTF-8 without NUL")
    if depth >= MAX_JSON_DEPTH:
        return "", f"is nested more than {MAX_JSON_DEPTH} levels deep; flatten it"
    if is_dataclass(value) or hasattr(type(value), "__pydantic_fields__"):
        value = value.__dict__  # a pydantic model or a dataclass: walk its fields
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := _text_problem(key)) is not None:
                return f".{key!r}", f"has a key that {problem}"
            found = find_problem(item, depth + 1, budget)
            if found is not None:
                return f".{key}{found[0]}", found[1]
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = find_problem(item, depth + 1, budget)
            if found is not None:
                return f"[{index}]{found[0]}", found[1]
    return None


def check_value(value: Any, where: str = "value") -> Any:
    """Return ``value`` when every number, string and container in it can round-trip.

    Args:
        value: JSON-like data (dicts, lists, str, int, float, bool, None, pydantic models,
            dataclasses).
        where: the name of the value, for the message.

    Raises:
        ValueError: "<where>.<path> is an integer of 400 digits; ..." for the first bad value.
    """
    found = find_problem(value, 0, [MAX_JSON_NODES])
    if found is not None:
        raise ValueError(f"{where}{found[0]} {found[1]}")
    return value
