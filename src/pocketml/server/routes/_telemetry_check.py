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
(``$`` would let a trailing newline through). Integer bounds come from
``pocketml.bounds`` like the schema's. msgspec refuses lone surrogates and raw control
characters itself; a body with a ``\\u0000`` escape goes to the strict path, whose
``Text`` fields refuse NUL (PostgreSQL cannot store it) naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from pocketml.bounds import INT32_MAX, INT64_MAX
from pocketml.server.schemas_device import ID_PATTERN, DeviceClass
from pocketml.telemetry import TelemetryBatch

__all__ = ["batch_of", "decode_batch"]

_MsTs = Annotated[float, msgspec.Meta(ge=0)]  # JSON has no NaN/inf: finite by construction
_MsName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_MsShort = Annotated[str, msgspec.Meta(max_length=128)]
_MsVariant = Annotated[str, msgspec.Meta(max_length=64)]
_MsVersion = Annotated[int, msgspec.Meta(ge=1, le=INT32_MAX)] | None
_MsId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN.removesuffix("$") + r"\Z")]


class _Inference(msgspec.Struct, tag_field="type", tag="inference", forbid_unknown_fields=True):
    type: ClassVar[str] = "inference"
    ts: _MsTs
    model: _MsName
    variant: _MsVariant | None
    source: Literal["local", "cloud", "fallback"]
    latency_ms: _MsTs
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    label: _MsShort
    prediction_id: _MsShort
    version: _MsVersion = None
    memory_mb: _MsTs | None = None


class _Error(msgspec.Struct, tag_field="type", tag="error", forbid_unknown_fields=True):
    type: ClassVar[str] = "error"
    ts: _MsTs
    model: _MsName
    stage: Literal["download", "verify", "load", "inference", "cloud"]
    message: Annotated[str, msgspec.Meta(max_length=500)]
    version: _MsVersion = None


class _Download(msgspec.Struct, tag_field="type", tag="download", forbid_unknown_fields=True):
    type: ClassVar[str] = "download"
    ts: _MsTs
    model: _MsName
    variant: _MsVariant
    bytes: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    duration_ms: _MsTs
    outcome: Literal["done", "failed", "resumed"]
    version: _MsVersion = None


class _Context(msgspec.Struct, forbid_unknown_fields=True):
    platform: Literal["android", "ios", "linux"] | None = None
    device_class: DeviceClass | None = None
    app_version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    batch_id: _MsId
    device_id: _MsId
    events: Annotated[list[_Inference | _Error | _Download], msgspec.Meta(min_length=1)]
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
