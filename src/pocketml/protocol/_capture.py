"""Consented sample capture: the policy a server sends and the sample batch a device sends.

One home for both sides (docs/protocol.md, "Samples"):

- ``CapturePolicy`` travels in the version policy and the manifest entry's ``capture``
  object, exactly like ``MonitorPolicy``. Its defaults live here and nowhere else; a
  device that reads no ``capture`` object (an older server) captures nothing.
- ``POST /v1/samples`` carries a ``SampleBatch``: a ``batch_id``, the ``device_id`` and up to
  ``MAX_SAMPLES_PER_BATCH`` samples, each with the input tensor *as the model saw it*
  (after the schema's normalization) as base64 little-endian float32. ``SAMPLE_FIELDS``
  and ``SAMPLE_INPUT_FIELDS`` declare the wire fields (the docs table derives from them);
  ``parse_sample_batch`` is the one structural check the server runs before it looks at
  a model (shape against the schema, labels, the registry: ``pocketml.loop``).

Standard library only, so the device SDK builds batches with the same declaration.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pocketml.errors import ValidationFailed
from pocketml.limits import check_text
from pocketml.protocol._fields import WireField

__all__ = [
    "CAPTURE_MODES",
    "CAPTURE_POLICY_FIELDS",
    "DEVICE_ID_PATTERN",
    "MAX_SAMPLES_PER_BATCH",
    "MAX_SAMPLE_BATCH_BYTES",
    "MAX_SAMPLE_VALUES",
    "SAMPLE_BATCH_FIELDS",
    "SAMPLE_FIELDS",
    "SAMPLE_INPUT_FIELDS",
    "CaptureMode",
    "CapturePolicy",
    "SampleBatch",
    "WireSample",
    "encode_tensor",
    "parse_sample_batch",
]

CaptureMode = Literal["all", "low_confidence", "feedback", "drifted"]
CAPTURE_MODES: tuple[str, ...] = ("all", "low_confidence", "feedback", "drifted")

MAX_SAMPLES_PER_BATCH = 100
"""Most samples in one ``POST /v1/samples`` (a device sends at most this many)."""
MAX_SAMPLE_BATCH_BYTES = 512 * 1024
"""Most tensor bytes (decoded) a device puts in one batch."""
MAX_SAMPLE_VALUES = 1 << 20
"""Most float32 values in one sample's tensor (4 MiB)."""

_HEX32 = r"^[0-9a-f]{32}$"
_LABEL_CHARS = 256


def _fail(where: str, expected: str, got: Any) -> ValidationFailed:
    shown = repr(got)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ValidationFailed(f"{where} must be {expected}; got {shown}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class CapturePolicy:
    """What a device captures of one model version, when the user consented.

    Attributes:
        enabled: capture at all (off by default: the operator opts a version in).
        rate: probability in [0, 1] that an eligible prediction is kept.
        when: which predictions are eligible: ``all``; ``low_confidence`` (confidence
            below ``low_confidence_below``); ``feedback`` (only those the user labels:
            held in memory, at most ``max_hold``, until ``Device.feedback`` arrives);
            ``drifted`` (inputs with a monitored feature in one of ``drifted_bins``).
        low_confidence_below: the confidence bound of ``low_confidence``.
        drifted_bins: feature name -> bin indices of the version's reference profile
            that count as drifted (``drifted`` mode).
        max_bytes_per_day: tensor bytes kept per UTC day; beyond it samples are dropped
            and counted.
        wifi_only: upload only when the app says the device is on Wi-Fi.
        retention_days: unsent samples older than this are deleted on the device (and
            the server purges stored ones older than this).
        max_hold: predictions held in memory waiting for feedback (``feedback`` mode).
    """

    enabled: bool = False
    rate: float = 1.0
    when: CaptureMode = "feedback"
    low_confidence_below: float = 0.7
    drifted_bins: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    max_bytes_per_day: int = 5_000_000
    wifi_only: bool = True
    retention_days: int = 30
    max_hold: int = 200

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``capture`` object (and the stored override's shape)."""
        return {
            "enabled": self.enabled,
            "rate": self.rate,
            "when": self.when,
            "low_confidence_below": self.low_confidence_below,
            "drifted_bins": {k: list(v) for k, v in sorted(self.drifted_bins.items())},
            "max_bytes_per_day": self.max_bytes_per_day,
            "wifi_only": self.wifi_only,
            "retention_days": self.retention_days,
            "max_hold": self.max_hold,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "capture") -> CapturePolicy:
        """A policy from a (possibly partial) object; missing fields take the defaults.

        Raises:
            ValidationFailed: an unknown key or a value out of its bounds, named as
                ``<where>.<field>``.
        """
        if not isinstance(raw, Mapping):
            raise _fail(where, "an object", raw)
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValidationFailed(
                f"{where} has unknown field(s) {', '.join(unknown)}; known: "
                f"{', '.join(cls.__dataclass_fields__)}"
            )
        d = cls()
        values: dict[str, Any] = {}
        for spec in CAPTURE_POLICY_FIELDS:
            value = raw.get(spec.name, getattr(d, spec.name))
            values[spec.name] = _check_policy_field(spec, value, f"{where}.{spec.name}")
        return cls(**values)


def _check_policy_field(spec: WireField, value: Any, where: str) -> Any:
    if spec.type == "boolean":
        if not isinstance(value, bool):
            raise _fail(where, "true or false", value)
        return value
    if spec.type == "object":  # drifted_bins
        if not isinstance(value, Mapping) or len(value) > 256:
            raise _fail(where, "an object of at most 256 feature names", value)
        bins: dict[str, tuple[int, ...]] = {}
        for name, indices in value.items():
            if not isinstance(name, str) or not 0 < len(name) <= 128:
                raise _fail(where, "feature names of 1-128 chars", name)
            if not isinstance(indices, list | tuple) or len(indices) > 4096:
                raise _fail(f"{where}.{name}", "a list of at most 4096 bin indices", indices)
            if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices):
                raise _fail(f"{where}.{name}", "bin indices (ints >= 0)", indices)
            bins[name] = tuple(sorted(set(indices)))
        return bins
    if spec.choices:
        if value not in spec.choices:
            raise _fail(where, f"one of {', '.join(spec.choices)}", value)
        return value
    if spec.type == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(where, "an integer", value)
    elif not _is_number(value) or not math.isfinite(value):
        raise _fail(where, "a finite number", value)
    assert spec.minimum is not None and spec.maximum is not None
    if not spec.minimum <= value <= spec.maximum:
        raise _fail(where, f"in [{spec.minimum:g}, {spec.maximum:g}]", value)
    return float(value) if spec.type == "number" else value


CAPTURE_POLICY_FIELDS: tuple[WireField, ...] = (
    WireField("enabled", "boolean", "Capture samples of this version (with consent only)."),
    WireField(
        "rate", "number", "Probability an eligible prediction is kept.", minimum=0, maximum=1
    ),
    WireField("when", "string", "Which predictions are eligible.", choices=CAPTURE_MODES),
    WireField(
        "low_confidence_below",
        "number",
        "`low_confidence`: capture below this confidence.",
        minimum=0,
        maximum=1,
    ),
    WireField(
        "drifted_bins",
        "object",
        "`drifted`: feature name -> reference-profile bin indices that count as drifted.",
    ),
    WireField(
        "max_bytes_per_day",
        "integer",
        "Tensor bytes a device keeps per UTC day (beyond: dropped and counted).",
        minimum=0,
        maximum=10**10,
    ),
    WireField("wifi_only", "boolean", "Upload samples only on Wi-Fi."),
    WireField(
        "retention_days",
        "integer",
        "Days a sample is kept (device and server).",
        minimum=1,
        maximum=365,
    ),
    WireField(
        "max_hold",
        "integer",
        "`feedback`: predictions held in memory awaiting a label.",
        minimum=1,
        maximum=10_000,
    ),
)

# ---------------------------------------------------------------- the sample batch

SAMPLE_INPUT_FIELDS: tuple[WireField, ...] = (
    WireField("shape", "object", "The tensor's shape: a list of ints (the batch of one included)."),
    WireField("dtype", "string", "Always `float32`.", choices=("float32",)),
    WireField(
        "data",
        "string",
        "base64 of the little-endian float32 values, as the model saw them (normalized).",
        max_length=4 * MAX_SAMPLE_VALUES * 4 // 3 + 4,
    ),
)

SAMPLE_FIELDS: tuple[WireField, ...] = (
    WireField(
        "sample_id", "string", "The sample's id (uuid4 hex): idempotency key.", pattern=_HEX32
    ),
    WireField("model", "string", "The model's name.", min_length=1, max_length=64),
    WireField("version", "integer", "The version that scored it.", minimum=1, maximum=2**63 - 1),
    WireField(
        "prediction_id",
        "string",
        "The prediction's id (joins feedback sent later).",
        nullable=True,
        max_length=128,
    ),
    WireField("device_class", "string", "The device's class.", max_length=32),
    WireField("input", "object", "The tensor (`input.*`)."),
    WireField("predicted", "string", "The label the model answered.", max_length=_LABEL_CHARS),
    WireField("confidence", "number", "That answer's confidence.", minimum=0, maximum=1),
    WireField(
        "label",
        "string",
        "The user's label (feedback), null when none.",
        nullable=True,
        max_length=_LABEL_CHARS,
    ),
    WireField(
        "captured_at", "number", "Unix seconds on the device's clock.", minimum=0, maximum=1e11
    ),
)

DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{8,128}$"
"""A device id on the wire (the check-in's rule): random per install, 8-128 chars."""

SAMPLE_BATCH_FIELDS: tuple[WireField, ...] = (
    WireField("batch_id", "string", "The batch's id (uuid4 hex).", pattern=_HEX32),
    WireField("device_id", "string", "The sending device's id.", pattern=DEVICE_ID_PATTERN),
    WireField(
        "samples",
        "object",
        f"A list of 1-{MAX_SAMPLES_PER_BATCH} samples (`samples[].*`).",
    ),
)


@dataclass(frozen=True)
class WireSample:
    """One parsed sample (the tensor decoded to raw little-endian float32 bytes)."""

    sample_id: str
    model: str
    version: int
    prediction_id: str | None
    device_class: str
    shape: tuple[int, ...]
    data: bytes  # little-endian float32, prod(shape) * 4 bytes
    predicted: str
    confidence: float
    label: str | None
    captured_at: float


@dataclass(frozen=True)
class SampleBatch:
    """A parsed ``POST /v1/samples`` body."""

    batch_id: str
    device_id: str
    samples: tuple[WireSample, ...]


def encode_tensor(shape: tuple[int, ...], le_float32: bytes) -> dict[str, Any]:
    """The wire ``input`` object of a tensor (``le_float32``: little-endian float32 bytes)."""
    return {
        "shape": list(shape),
        "dtype": "float32",
        "data": base64.b64encode(le_float32).decode("ascii"),
    }


def _string(spec: WireField, value: Any, where: str) -> str | None:
    if value is None and spec.nullable:
        return None
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    try:  # NUL, lone surrogates: could not be stored and read back
        check_text(value)
    except ValueError as exc:
        raise ValidationFailed(f"{where}: {exc}") from None
    if spec.pattern is not None and not re.fullmatch(spec.pattern[1:-1], value):
        raise _fail(where, f"a string matching {spec.pattern}", value)
    if spec.max_length is not None and len(value) > spec.max_length:
        raise _fail(where, f"at most {spec.max_length} chars", value)
    if spec.min_length is not None and len(value) < spec.min_length:
        raise _fail(where, f"at least {spec.min_length} chars", value)
    return value


def _number_field(spec: WireField, value: Any, where: str) -> float:
    if not _is_number(value) or not math.isfinite(value):
        raise _fail(where, "a finite number", value)
    if spec.type == "integer" and not isinstance(value, int):
        raise _fail(where, "an integer", value)
    assert spec.minimum is not None and spec.maximum is not None
    if not spec.minimum <= value <= spec.maximum:
        raise _fail(where, f"in [{spec.minimum:g}, {spec.maximum:g}]", value)
    return value


def _parse_input(raw: Any, where: str) -> tuple[tuple[int, ...], bytes]:
    if not isinstance(raw, Mapping):
        raise _fail(where, "an object with shape, dtype, data", raw)
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not 0 < len(shape) <= 8
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise _fail(f"{where}.shape", "a list of 1-8 positive ints", shape)
    count = math.prod(shape)
    if count > MAX_SAMPLE_VALUES:
        raise _fail(f"{where}.shape", f"at most {MAX_SAMPLE_VALUES} values", shape)
    if raw.get("dtype") != "float32":
        raise _fail(f"{where}.dtype", "float32", raw.get("dtype"))
    text = raw.get("data")
    if not isinstance(text, str) or len(text) > SAMPLE_INPUT_FIELDS[2].max_length:  # type: ignore[operator]
        raise _fail(f"{where}.data", "a base64 string", "...")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(f"{where}.data", "valid base64", text[:40]) from exc
    if len(data) != 4 * count:
        raise ValidationFailed(
            f"{where}.data holds {len(data)} bytes; shape {shape} as float32 needs {4 * count}"
        )
    values = struct.unpack(f"<{count}f", data)
    if not all(math.isfinite(v) for v in values):
        raise ValidationFailed(f"{where}.data holds NaN or infinite values; send finite floats")
    return tuple(shape), data


def _parse_sample(raw: Any, where: str) -> WireSample:
    if not isinstance(raw, Mapping):
        raise _fail(where, "an object", raw)
    unknown = sorted(set(raw) - {f.name for f in SAMPLE_FIELDS})
    if unknown:
        raise ValidationFailed(f"{where} has unknown field(s) {', '.join(unknown)}")
    got: dict[str, Any] = {}
    for spec in SAMPLE_FIELDS:
        name = f"{where}.{spec.name}"
        if spec.name not in raw and not spec.nullable:
            raise ValidationFailed(f"{name} is required")
        value = raw.get(spec.name)
        if spec.name == "input":
            got["shape"], got["data"] = _parse_input(value, name)
        elif spec.type == "string":
            got[spec.name] = _string(spec, value, name)
        else:
            got[spec.name] = _number_field(spec, value, name)
    return WireSample(
        sample_id=got["sample_id"],
        model=got["model"],
        version=int(got["version"]),
        prediction_id=got["prediction_id"],
        device_class=got["device_class"],
        shape=got["shape"],
        data=got["data"],
        predicted=got["predicted"],
        confidence=float(got["confidence"]),
        label=got["label"],
        captured_at=float(got["captured_at"]),
    )


def parse_sample_batch(body: Any) -> SampleBatch:
    """Check a ``POST /v1/samples`` body's structure (not the models: the server does).

    Raises:
        ValidationFailed: naming the first bad field as ``samples[i].field``.
    """
    if not isinstance(body, Mapping):
        raise _fail("body", "an object with batch_id and samples", body)
    batch_id = _string(SAMPLE_BATCH_FIELDS[0], body.get("batch_id"), "batch_id")
    device_id = _string(SAMPLE_BATCH_FIELDS[1], body.get("device_id"), "device_id")
    samples = body.get("samples")
    if not isinstance(samples, list) or not 0 < len(samples) <= MAX_SAMPLES_PER_BATCH:
        raise _fail("samples", f"a list of 1-{MAX_SAMPLES_PER_BATCH} samples", samples)
    parsed = tuple(_parse_sample(item, f"samples[{i}]") for i, item in enumerate(samples))
    ids = [s.sample_id for s in parsed]
    if len(set(ids)) != len(ids):
        raise ValidationFailed("samples repeat a sample_id within one batch")
    assert batch_id is not None and device_id is not None
    return SampleBatch(batch_id, device_id, parsed)
