"""A wire field declared once: its name, JSON type, limits and one line of meaning.

The protocol's objects (telemetry events, the manifest entry) are tuples of ``WireField``.
Every typed copy elsewhere is generated from them at import time: the server's pydantic
models and msgspec Structs, the telemetry store's Arrow schema, the device queue's SQL
columns and the field tables of docs/protocol.md. Standard library only, so the device
SDK reads the same declaration as the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["INT32_MAX", "INT64_MAX", "WireField", "WireType", "describe_rule"]

WireType = Literal["string", "integer", "number", "boolean", "object"]

# The same bounds as pocketml.bounds (which needs pydantic); tests/test_protocol.py checks.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class WireField:
    """One field of a protocol object.

    Attributes:
        name: the JSON key.
        type: its JSON type: "string", "integer", "number" (finite), "boolean", "object".
        description: one line: what the value means (shown in docs/protocol.md).
        required: the key must be present. An optional field may also be null, and a
            receiver stores a missing one as null.
        nullable: null is allowed (always true for an optional field).
        minimum: the smallest allowed number, inclusive.
        maximum: the largest allowed number, inclusive.
        min_length: the fewest characters of a string.
        max_length: the most characters of a string.
        choices: the only allowed strings, when the value is one of a closed set.
        pattern: a regular expression a string must match, anchored with ``^`` and ``$``.
    """

    name: str
    type: WireType
    description: str
    required: bool = True
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None

    def __post_init__(self) -> None:
        if not self.required and not self.nullable:
            object.__setattr__(self, "nullable", True)  # missing and null mean the same
        if self.type == "string" and not (self.choices or self.pattern or self.max_length):
            raise ValueError(f"the string field {self.name!r} needs a bound (max_length)")
        if self.pattern is not None and not (
            self.pattern.startswith("^") and self.pattern.endswith("$")
        ):
            raise ValueError(f"the pattern of {self.name!r} must be anchored with ^ and $")


def _number(value: float) -> str:
    if value == INT64_MAX:
        return "2^63 - 1"
    if value == INT32_MAX:
        return "2^31 - 1"
    return str(int(value)) if float(value).is_integer() else str(value)


def describe_rule(spec: WireField) -> str:
    """The field's rule in a few words, for a documentation table.

    Args:
        spec: the field.

    Returns:
        e.g. ``"integer in [1, 2^31 - 1], optional (or null)"``.
    """
    if spec.choices:
        rule = " / ".join(f"`{choice}`" for choice in spec.choices)
    elif spec.pattern is not None:
        rule = f"string matching `{spec.pattern}`"
    elif spec.type == "string":
        low = spec.min_length or 0
        rule = f"string of {low}-{spec.max_length} chars" if low else "string"
        if not low:
            rule += f" of at most {spec.max_length} chars"
    else:
        rule = spec.type
        if spec.minimum is not None and spec.maximum is not None:
            rule += f" in [{_number(spec.minimum)}, {_number(spec.maximum)}]"
        elif spec.minimum is not None:
            rule += f" >= {_number(spec.minimum)}"
    if not spec.required:
        rule += ", optional (or null)"
    elif spec.nullable:
        rule += ", or null"
    return rule
