"""Bounded values: what a write may carry is what can be stored, serialised and read back.

Every request body, and every ModelSchema, is made of these. A value that passes
validation is stored (SQLite, PostgreSQL JSONB and text columns) and later written out
with orjson on every read (check-in, lists, the console), so validation must refuse what
any of those cannot hold, or one accepted write breaks every later read for good:

- integers beyond 64 bits (orjson writes at most 64-bit integers);
- floats that are NaN or infinite (not JSON);
- strings with lone surrogates (not encodable as UTF-8) or NUL characters (PostgreSQL
  text and JSONB refuse ``\\x00``);
- unbounded nesting and sizes (free-form JSON objects are walked; a walk must end).

``Bounded`` is the base of every pydantic model at an edge: after its fields validate, it
walks every value it holds and names the first one that cannot round-trip. The annotated
types (``Int64``, ``VersionNumber``, ``FiniteFloat``, ``Text``, ``JsonObject``) state
the same bounds per field, so they show in the OpenAPI document and name the field in the
422. This module imports pydantic only: the core (``schema``), the registry and the
server all use it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_JSON_DEPTH",
    "MAX_JSON_NODES",
    "Bounded",
    "Count",
    "FiniteFloat",
    "Int64",
    "JsonObject",
    "Text",
    "VersionNumber",
    "check_text",
    "check_value",
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


def _problem(value: Any, depth: int, budget: list[int]) -> tuple[str, str] | None:
    """(where, what) of the first value that cannot round-trip, or None."""
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
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (problem := _text_problem(key)) is not None:
                return f".{key!r}", f"has a key that {problem}"
            found = _problem(item, depth + 1, budget)
            if found is not None:
                return f".{key}{found[0]}", found[1]
        return None
    if isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            found = _problem(item, depth + 1, budget)
            if found is not None:
                return f"[{index}]{found[0]}", found[1]
    return None


def check_value(value: Any, where: str = "value") -> Any:
    """Return ``value`` when every number, string and container in it can round-trip.

    Args:
        value: JSON-like data (dicts, lists, str, int, float, bool, None, pydantic models).
        where: the name of the value, for the message.

    Raises:
        ValueError: "<where>.<path> is an integer of 400 digits; ..." for the first bad value.
    """
    found = _problem(value, 0, [MAX_JSON_NODES])
    if found is not None:
        raise ValueError(f"{where}{found[0]} {found[1]}")
    return value


def _check_object(value: dict[str, Any]) -> dict[str, Any]:
    return check_value(value, "the object")


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""Any integer that fits in 64 bits (signed)."""

Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A count or a size: 0 to 2^63 - 1."""

VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]
"""A model version number: 1 to 2^31 - 1."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that is neither NaN nor infinite."""

Text = Annotated[str, AfterValidator(check_text)]
"""A string without lone surrogates or NUL characters (add ``Field(max_length=...)``)."""

JsonObject = Annotated[dict[str, Any], AfterValidator(_check_object)]
"""A free-form JSON object whose every value can round-trip (see ``check_value``)."""


class Bounded(BaseModel):
    """Base of the models at an edge: unknown fields refused, every value round-trips.

    The after-validator walks the whole validated model (nested models, lists, dicts,
    free-form values) so a field typed ``str`` or ``Any`` that a subclass forgot to bound
    still cannot let a lone surrogate, a NUL, a 400-digit integer or a NaN through.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def _check_round_trip(self) -> Any:
        for name, value in self.__dict__.items():
            found = _problem(value, 0, [MAX_JSON_NODES])
            if found is not None:
                raise ValueError(f"field '{name}{found[0]}' {found[1]}")
        return self
