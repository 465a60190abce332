"""A fast check of telemetry batches that accepts only what is certainly valid.

``decode_batch(body)`` decodes the raw bytes straight into typed msgspec Structs that
mirror ``TelemetryRequest`` (parse and validate in one pass, about 0.4 ms per 1,000
events, without building 1,000 dicts).

``TelemetryRequest`` (pydantic) is the contract and writes the 422 messages that name
``events[i].field``; running it on 1,000 events costs more than storing them. This check
accepts a batch only when every value already has its canonical JSON type and satisfies
the schema's limits, and then returns exactly what pydantic would have produced (floats
for float fields, the same keys). Anything else, including values pydantic would coerce
(``"1"`` for an int), returns None and the caller falls back to pydantic, so the accepted
language and every error message stay those of the schema. msgspec is stricter than
pydantic's lax mode in the same direction (no coercion of strings, floats or bools to
ints), and its ``pattern`` uses ``re.search``, so the id pattern ends with ``\\Z``
(``$`` would let a trailing newline through). The event Structs are generated from
``pocketml.protocol.EVENT_KINDS`` like the schema's TypedDicts, so both check the same
declared bounds. msgspec refuses lone surrogates and raw control
characters itself; a body with a ``\\u0000`` escape goes to the strict path, whose
``Text`` fields refuse NUL (PostgreSQL cannot store it) naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import msgspec

from pocketml.protocol import (
    DEVICE_CLASS_PATTERN,
    EVENT_KINDS,
    EVENT_TYPE_FIELD,
    EventKind,
    Platform,
    WireField,
)
from pocketml.server.schemas_device import ID_PATTERN
from pocketml.telemetry import TelemetryBatch

__all__ = ["EVENT_STRUCTS", "batch_of", "decode_batch"]


def _search_pattern(pattern: str) -> str:
    """A pydantic-style anchored pattern for msgspec's ``re.search`` (``$`` -> ``\\Z``)."""
    return pattern.removesuffix("$") + r"\Z"


def _struct_type(spec: WireField) -> Any:
    """The msgspec annotation of one declared event field: exactly its bounds, no coercion.

    JSON has no NaN or infinity, so a decoded number is finite by construction.
    """
    base: Any
    if spec.choices:
        base = Literal[spec.choices]
    elif spec.type == "string":
        pattern = None if spec.pattern is None else _search_pattern(spec.pattern)
        meta = msgspec.Meta(min_length=spec.min_length, max_length=spec.max_length, pattern=pattern)
        base = Annotated[str, meta]
    elif spec.type in ("integer", "number"):
        kind = int if spec.type == "integer" else float
        base = Annotated[kind, msgspec.Meta(ge=spec.minimum, le=spec.maximum)]
    elif spec.type == "boolean":
        base = bool
    else:  # pragma: no cover - events hold no objects
        raise TypeError(f"event field {spec.name!r}: no msgspec type for {spec.type!r}")
    return base | None if spec.nullable else base


def _event_struct(kind: EventKind) -> type[msgspec.Struct]:
    """The Struct of one kind; ``type`` is a class attribute (the tag), like the dicts' key."""
    fields: list[Any] = []
    for spec in kind.all_fields:
        if spec.required:
            fields.append((spec.name, _struct_type(spec)))
        else:
            fields.append((spec.name, _struct_type(spec), None))
    return msgspec.defstruct(
        kind.name.title() + "EventStruct",
        fields,
        namespace={EVENT_TYPE_FIELD: kind.name},
        module=__name__,
        tag_field=EVENT_TYPE_FIELD,
        tag=kind.name,
        forbid_unknown_fields=True,
        kw_only=True,
    )


EVENT_STRUCTS: dict[str, type[msgspec.Struct]] = {
    name: _event_struct(kind) for name, kind in EVENT_KINDS.items()
}
"""Event kind -> its Struct, generated from ``pocketml.protocol.EVENT_KINDS``."""

_MsId = Annotated[str, msgspec.Meta(pattern=_search_pattern(ID_PATTERN))]
_MsClass = Annotated[str, msgspec.Meta(pattern=_search_pattern(DEVICE_CLASS_PATTERN))]
if TYPE_CHECKING:
    _MsEvent = Any
else:
    _MsEvent = Union[tuple(EVENT_STRUCTS.values())]  # noqa: UP007 - built from a tuple


class _Context(msgspec.Struct, forbid_unknown_fields=True):
    platform: Platform | None = None
    device_class: _MsClass | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    batch_id: _MsId
    device_id: _MsId
    events: Annotated[list[_MsEvent], msgspec.Meta(min_length=1)]
    device: _Context | None = None


_DECODER = msgspec.json.Decoder(_Request)


def decode_batch(body: bytes) -> TelemetryBatch | None:
    """The batch of a raw JSON body when it is certainly valid, else None (ask pydantic).

    Args:
        body: the request body.

    Returns:
        A ``TelemetryBatch`` whose events are typed Structs (attributes named like the
        event fields, ``type`` included) with the values ``TelemetryRequest`` gives, or
        None when the body is not JSON or anything does not match exactly.
    """
    if b"\\u0000" in body:  # NUL cannot be stored: the strict path names the field
        return None
    try:
        request = _DECODER.decode(body)
    except msgspec.DecodeError:  # ValidationError included
        return None
    return batch_of(request)


def batch_of(request: Any) -> TelemetryBatch:
    """The ``TelemetryBatch`` of a validated request (msgspec Struct or pydantic model)."""
    context = request.device
    return TelemetryBatch(
        batch_id=request.batch_id,
        device_id=request.device_id,
        events=request.events,
        platform=context.platform if context else None,
        device_class=context.device_class if context else None,
        app_version=context.app_version if context else None,
    )
