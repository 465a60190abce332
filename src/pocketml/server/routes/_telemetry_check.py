"""Fast checks of telemetry batches that accept only what is certainly valid.

``decode_batch(body)`` decodes the raw bytes straight into typed msgspec Structs that
mirror ``TelemetryRequest`` (parse and validate in one pass, about 0.4 ms per 1,000
events, without building 1,000 dicts). ``fast_check_batch(payload)`` does the same on
an already parsed body in plain code.

``TelemetryRequest`` (pydantic) is the contract and writes the 422 messages that name
``events[i].field``; running it on 1,000 events costs more than storing them. This check
accepts a batch only when every value already has its canonical JSON type and satisfies
the schema's limits, and then returns exactly what pydantic would have produced (floats
for float fields, the same keys). Anything else, including values pydantic would coerce
(``"1"`` for an int), returns None and the caller falls back to pydantic, so the accepted
language and every error message stay those of the schema. msgspec is stricter than
pydantic's lax mode in the same direction (no coercion of strings, floats or bools to
ints), and its ``pattern`` uses ``re.search``, so the id pattern ends with ``\\Z``
(``$`` would let a trailing newline through).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal, get_args

import msgspec

from pocketml.server.schemas_device import ID_PATTERN, DeviceClass
from pocketml.telemetry import TelemetryBatch

__all__ = ["batch_of", "decode_batch", "fast_check_batch"]

_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))  # fullmatch: no "\n"
_PLATFORMS = frozenset({"android", "ios", "linux"})
_DEVICE_CLASSES = frozenset(get_args(DeviceClass))
_BATCH_KEYS = frozenset({"batch_id", "device_id", "device", "events"})
_CONTEXT_KEYS = frozenset({"platform", "device_class", "app_version"})
_SOURCES = frozenset({"local", "cloud", "fallback"})
_STAGES = frozenset({"download", "verify", "load", "inference", "cloud"})
_OUTCOMES = frozenset({"done", "failed", "resumed"})

# (required keys, allowed keys) per event type; "type" is checked separately.
_KEYS = {
    "inference": (
        frozenset(
            {
                "type",
                "ts",
                "model",
                "variant",
                "source",
                "latency_ms",
                "confidence",
                "label",
                "prediction_id",
            }
        ),
        frozenset(
            {
                "type",
                "ts",
                "model",
                "variant",
                "source",
                "latency_ms",
                "confidence",
                "label",
                "prediction_id",
                "version",
                "memory_mb",
            }
        ),
    ),
    "error": (
        frozenset({"type", "ts", "model", "stage", "message"}),
        frozenset({"type", "ts", "model", "stage", "message", "version"}),
    ),
    "download": (
        frozenset({"type", "ts", "model", "variant", "bytes", "duration_ms", "outcome"}),
        frozenset({"type", "ts", "model", "variant", "bytes", "duration_ms", "outcome", "version"}),
    ),
}


def _number(value: Any, low: float, high: float = math.inf) -> float | None:
    """``value`` as a float when it is a finite int/float in [low, high], else None."""
    kind = type(value)
    if kind is not float and kind is not int:  # bool is neither (type() is exact)
        return None
    number = float(value)
    if not math.isfinite(number) or number < low or number > high:
        return None
    return number


def _text(value: Any, min_length: int, max_length: int) -> bool:
    return type(value) is str and min_length <= len(value) <= max_length


def _choice(value: Any, options: frozenset[str]) -> bool:
    return type(value) is str and value in options  # a list or dict is not hashable


def _version_ok(event: dict[str, Any]) -> bool:
    version = event.get("version")
    return version is None or (type(version) is int and version >= 1)


def _event_ok(event: Any) -> bool:
    """Check one event in place; float fields are converted to float."""
    if type(event) is not dict:
        return False
    kind = event.get("type")
    keys = _KEYS.get(kind) if type(kind) is str else None
    if keys is None or not keys[0] <= event.keys() or not event.keys() <= keys[1]:
        return False
    ts = _number(event["ts"], 0.0)
    if ts is None or not _text(event["model"], 1, 64) or not _version_ok(event):
        return False
    event["ts"] = ts
    if kind == "inference":
        latency = _number(event["latency_ms"], 0.0)
        confidence = _number(event["confidence"], 0.0, 1.0)
        variant = event["variant"]
        memory = event.get("memory_mb")
        if (
            latency is None
            or confidence is None
            or (variant is not None and not _text(variant, 0, 64))
            or not _choice(event["source"], _SOURCES)
            or not _text(event["label"], 0, 128)
            or not _text(event["prediction_id"], 0, 128)
        ):
            return False
        if memory is not None:
            memory = _number(memory, 0.0)
            if memory is None:
                return False
            event["memory_mb"] = memory
        event["latency_ms"] = latency
        event["confidence"] = confidence
        return True
    if kind == "error":
        return _choice(event["stage"], _STAGES) and _text(event["message"], 0, 500)
    duration = _number(event["duration_ms"], 0.0)
    size = event["bytes"]
    if (
        duration is None
        or type(size) is not int
        or size < 0
        or not _text(event["variant"], 0, 64)
        or not _choice(event["outcome"], _OUTCOMES)
    ):
        return False
    event["duration_ms"] = duration
    return True


def _context_ok(context: Any) -> bool:
    if context is None:
        return True
    if type(context) is not dict or not context.keys() <= _CONTEXT_KEYS:
        return False
    platform = context.get("platform")
    device_class = context.get("device_class")
    app_version = context.get("app_version")
    return (
        (platform is None or _choice(platform, _PLATFORMS))
        and (device_class is None or _choice(device_class, _DEVICE_CLASSES))
        and (app_version is None or _text(app_version, 0, 32))
    )


def fast_check_batch(payload: Any) -> TelemetryBatch | None:
    """The batch of ``payload`` when it is certainly valid, else None (ask pydantic).

    Args:
        payload: the parsed JSON body; its events are normalized in place.

    Returns:
        A ``TelemetryBatch`` equal to what ``TelemetryRequest`` validation gives, or
        None when any value is missing, of another type, or outside its limits.
    """
    if type(payload) is not dict or not payload.keys() <= _BATCH_KEYS:
        return None
    batch_id = payload.get("batch_id")
    device_id = payload.get("device_id")
    events = payload.get("events")
    context = payload.get("device")
    if (
        type(batch_id) is not str
        or type(device_id) is not str
        or _ID.fullmatch(batch_id) is None
        or _ID.fullmatch(device_id) is None
        or type(events) is not list
        or not events
        or not _context_ok(context)
    ):
        return None
    for event in events:
        if not _event_ok(event):
            return None
    context = context or {}
    return TelemetryBatch(
        batch_id=batch_id,
        device_id=device_id,
        events=events,
        platform=context.get("platform"),
        device_class=context.get("device_class"),
        app_version=context.get("app_version"),
    )


# ---------------------------------------------------------------- msgspec, from bytes

_MsTs = Annotated[float, msgspec.Meta(ge=0)]  # JSON has no NaN/inf: finite by construction
_MsName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_MsShort = Annotated[str, msgspec.Meta(max_length=128)]
_MsVariant = Annotated[str, msgspec.Meta(max_length=64)]
_MsVersion = Annotated[int, msgspec.Meta(ge=1)] | None
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
    bytes: Annotated[int, msgspec.Meta(ge=0)]
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
