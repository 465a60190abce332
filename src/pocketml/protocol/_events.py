"""Telemetry event kinds and their fields: the one declaration every copy derives from.

A device sends events (``POST /v1/telemetry``); each is an object whose ``type`` names its
kind. Before this module the field list was spelled in seven places (the pydantic and
msgspec schemas, the Arrow schema of stored chunks, the column list of exports, the device
queue's SQL, the docs). Now each kind is declared here once, and the server's pydantic
models, its msgspec Structs, ``pocketml.telemetry.EVENT_COLUMNS``, the chunk's Arrow
schema, the device queue's inference columns and the table in docs/protocol.md are built
from it at import time; ``tests/test_protocol.py`` checks every copy.

**Adding a field** is an edit of this file plus its test: declare it (optional, so that
devices and stored chunks without it stay valid); intake accepts it, chunks store it as a
new Arrow column (older chunks read it back as null), and the exporter writes it. A new
*required* field breaks every device already in the field: add it as optional instead.
A field's name keeps one wire type across kinds (a column has one type).
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketml.protocol._errors import ERROR_CODE_PATTERN
from pocketml.protocol._fields import INT32_MAX, INT64_MAX, WireField

__all__ = [
    "COMMON_EVENT_FIELDS",
    "EVENT_COLUMNS",
    "EVENT_COLUMN_TYPES",
    "EVENT_KINDS",
    "EVENT_TYPE_FIELD",
    "INFERENCE_QUEUE_FIELDS",
    "MAX_SKETCH_CHARS",
    "MAX_SKETCH_EPSILON",
    "PROFILE_EVENT",
    "STORED_EVENT_KINDS",
    "EventKind",
]

EVENT_TYPE_FIELD = "type"
"""The key that names an event's kind (the discriminator)."""


@dataclass(frozen=True)
class EventKind:
    """One kind of telemetry event: its ``type`` value and its own fields.

    Attributes:
        name: the value of ``type``.
        description: when a device sends it.
        fields: its fields after the common ones (``COMMON_EVENT_FIELDS``), in order.
        stored: its events are rows of the event table (telemetry chunks, Parquet). A
            ``profile`` event is not: intake merges its counts into the sketch store,
            so its fields are no columns (``EVENT_COLUMNS`` leaves them out).
    """

    name: str
    description: str
    fields: tuple[WireField, ...]
    stored: bool = True

    @property
    def all_fields(self) -> tuple[WireField, ...]:
        """The common fields, then the kind's own (without ``type``)."""
        return COMMON_EVENT_FIELDS + self.fields


_VARIANT_CHARS = 64
_TEXT_CHARS = 128

COMMON_EVENT_FIELDS: tuple[WireField, ...] = (
    WireField("ts", "number", "Unix time in seconds when it happened (device clock).", minimum=0),
    WireField("model", "string", "The model's name.", min_length=1, max_length=_VARIANT_CHARS),
    WireField(
        "version",
        "integer",
        "The model version it concerns, when known.",
        required=False,
        minimum=1,
        maximum=INT32_MAX,
    ),
)

INFERENCE = EventKind(
    "inference",
    "A model answered (on the device, in the cloud, or locally after a failed cloud call).",
    (
        WireField(
            "variant",
            "string",
            "The variant that answered.",
            nullable=True,
            max_length=_VARIANT_CHARS,
        ),
        WireField(
            "source",
            "string",
            "Who answered: `fallback` is the local answer after the cloud failed.",
            choices=("local", "cloud", "fallback"),
        ),
        WireField("latency_ms", "number", "Wall time of the whole prediction.", minimum=0),
        WireField("confidence", "number", "The top class probability.", minimum=0, maximum=1),
        WireField("label", "string", "The predicted label.", max_length=_TEXT_CHARS),
        WireField(
            "prediction_id",
            "string",
            "The id feedback refers to.",
            max_length=_TEXT_CHARS,
        ),
        WireField(
            "memory_mb",
            "number",
            "Memory the runtime used, when measured.",
            required=False,
            minimum=0,
        ),
    ),
)

ERROR = EventKind(
    "error",
    "Something failed on the device (the model's previous package stays active).",
    (
        WireField(
            "stage",
            "string",
            "Where it failed.",
            choices=("download", "verify", "load", "inference", "cloud"),
        ),
        WireField("message", "string", "What failed, for people.", max_length=500),
        WireField(
            "code",
            "string",
            "The `pocketml.errors` code of the failure (e.g. `integrity_failed`), so "
            "dashboards can group errors by cause.",
            required=False,
            pattern=ERROR_CODE_PATTERN,
        ),
    ),
)

DOWNLOAD = EventKind(
    "download",
    "A package download finished, failed or resumed.",
    (
        WireField("variant", "string", "The variant downloaded.", max_length=_VARIANT_CHARS),
        WireField("bytes", "integer", "Bytes transferred.", minimum=0, maximum=INT64_MAX),
        WireField("duration_ms", "number", "Wall time of the transfer.", minimum=0),
        WireField("outcome", "string", "How it ended.", choices=("done", "failed", "resumed")),
    ),
)

MAX_SKETCH_CHARS = 131_072
"""The longest ``sketch`` string (base64url): 96 KiB of varints, room for the largest
layout (1,024 blocks) at a few bytes per bin; ``_sketch_codec`` states the encoding."""
MAX_SKETCH_EPSILON = 100.0
"""The largest epsilon one profile event may declare (beyond it the noise is nil)."""

PROFILE = EventKind(
    "profile",
    "The counts of what one model version scored in one window, binned into the edges of "
    "the version's reference profile (no raw values); `ts` is the window's start and "
    '`version` is required; see "Profile events".',
    (
        WireField(
            "sketch",
            "string",
            "The counts in the profile layout's order: base64url (no padding) of zigzag "
            'varints with zero runs ("Profile events").',
            min_length=1,
            max_length=MAX_SKETCH_CHARS,
        ),
        WireField(
            "n",
            "integer",
            "Inputs scored in the window (with noise when `epsilon` is set, so it may be "
            "negative then).",
            minimum=-INT32_MAX,
            maximum=10**9,
        ),
        WireField(
            "epsilon",
            "number",
            "The local differential privacy spent on these counts (two-sided geometric "
            "noise on every count); absent or null: exact counts.",
            required=False,
            minimum=1e-7,  # the smallest share: epsilon_per_day 0.001 over 1,440 windows
            maximum=MAX_SKETCH_EPSILON,
        ),
    ),
    stored=False,
)

EVENT_KINDS: dict[str, EventKind] = {
    kind.name: kind for kind in (INFERENCE, ERROR, DOWNLOAD, PROFILE)
}
STORED_EVENT_KINDS: frozenset[str] = frozenset(k.name for k in EVENT_KINDS.values() if k.stored)
PROFILE_EVENT = PROFILE.name
"""The ``type`` of the events the monitor checks and merges (not telemetry rows)."""
"""The kinds whose events are rows of the event table (chunks, Parquet)."""


def _columns() -> dict[str, WireField]:
    """Every field of every stored kind, first declaration first; one wire type per name.

    Every kind is checked (a field name keeps one wire type on the wire), but only the
    stored kinds' fields are columns.
    """
    columns: dict[str, WireField] = {}
    types: dict[str, WireField] = {}
    for kind in EVENT_KINDS.values():
        for spec in kind.all_fields:
            seen = types.setdefault(spec.name, spec)
            if seen.type != spec.type:
                raise TypeError(
                    f"event field {spec.name!r} is a {seen.type} in one kind and a "
                    f"{spec.type} in {kind.name!r}; a column has one type: rename one."
                )
            if kind.stored:
                columns.setdefault(spec.name, spec)
    return columns


_COLUMNS = _columns()
EVENT_COLUMNS: tuple[str, ...] = (EVENT_TYPE_FIELD, *_COLUMNS)
"""Every column an event may fill, ``type`` first; an event leaves other kinds' null."""
EVENT_COLUMN_TYPES: dict[str, str] = {EVENT_TYPE_FIELD: "string"} | {
    name: spec.type for name, spec in _COLUMNS.items()
}
"""Column -> wire type ("string", "integer", "number")."""

INFERENCE_QUEUE_FIELDS: tuple[str, ...] = tuple(spec.name for spec in COMMON_EVENT_FIELDS) + tuple(
    spec.name for spec in INFERENCE.fields if spec.required
)
"""The inference fields a device always fills (the common ones, then the kind's required
ones): the device queue stores them as columns, and its predict path builds tuples in this
order (``tests/test_protocol.py`` checks a real prediction's tuple)."""
