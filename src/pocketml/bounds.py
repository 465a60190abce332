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
422. The checks themselves live in ``pocketml.limits`` (standard library only, so the
device SDK's ``schema`` uses them without pydantic); this module turns them into pydantic
types for the registry's and the server's models.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from pocketml.limits import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_DEPTH,
    MAX_JSON_NODES,
    check_text,
    check_value,
    find_problem,
)

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
            found = find_problem(value, 0, [MAX_JSON_NODES])
            if found is not None:
                raise ValueError(f"field '{name}{found[0]}' {found[1]}")
        return self
