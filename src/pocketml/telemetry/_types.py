"""Values of the telemetry service: a validated batch, feedback, intake results, metrics."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa

from pocketml import protocol

__all__ = [
    "EVENT_COLUMNS",
    "EventRows",
    "Feedback",
    "IngestResult",
    "MetricsRow",
    "TelemetryBatch",
]

# Every column an event may fill, from the protocol's one declaration of event kinds; an
# event leaves the ones of other kinds null.
EVENT_COLUMNS: tuple[str, ...] = protocol.EVENT_COLUMNS


@dataclass(frozen=True)
class TelemetryBatch:
    """A batch of already validated events from one device.

    ``events`` are mappings whose keys are a subset of ``EVENT_COLUMNS`` ("type", "ts"
    and "model" always present), or objects with those fields as attributes (the
    server's msgspec Structs, which skip building 1,000 dicts).
    """

    batch_id: str
    device_id: str
    events: Sequence[Any]
    platform: str | None = None
    device_class: str | None = None
    app_version: str | None = None


@dataclass(frozen=True)
class IngestResult:
    """What intake did: events stored, or nothing because the batch was seen before."""

    accepted: int
    duplicate: bool


@dataclass(frozen=True)
class Feedback:
    """A label or a thumbs up/down for one prediction (exactly one of the two)."""

    prediction_id: str
    device_id: str
    model: str
    ts: float
    version: int | None = None
    label: str | None = None
    thumbs: str | None = None


@dataclass(frozen=True)
class MetricsRow:
    """Aggregates of one (model version, device class) over a time window.

    ``count`` counts inference events; ``error_rate`` = errors / (inferences + errors);
    ``cloud_share`` / ``fallback_share`` are shares of inferences by source;
    ``accuracy`` compares inference labels with label feedback on the same prediction id
    (None without such feedback).
    """

    version: int | None
    device_class: str | None
    count: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    error_rate: float | None
    cloud_share: float | None
    fallback_share: float | None
    mean_confidence: float | None
    feedback_count: int
    accuracy: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class EventRows:
    """Inference and error events of one model over a window, column by column.

    Every column is a pyarrow array with one entry per event (null where a value is
    missing); ``feedback_label`` is the label of the event's newest label feedback
    (joined on app and prediction id at query time), else null. Columnar so that a
    million events aggregate in well under a second (``aggregate_events``).
    """

    version: pa.Array
    device_class: pa.Array
    type: pa.Array
    source: pa.Array
    latency_ms: pa.Array
    confidence: pa.Array
    label: pa.Array
    feedback_label: pa.Array

    @classmethod
    def empty(cls) -> EventRows:
        """No events."""
        text = pa.array([], pa.string())
        number = pa.array([], pa.float64())
        return cls(
            version=pa.array([], pa.int64()),
            device_class=text,
            type=text,
            source=text,
            latency_ms=number,
            confidence=number,
            label=text,
            feedback_label=text,
        )

    def __len__(self) -> int:
        return len(self.type)

    def filter(self, mask: pa.Array) -> EventRows:
        """The events where ``mask`` (a boolean array) is true."""
        return EventRows(
            version=self.version.filter(mask),
            device_class=self.device_class.filter(mask),
            type=self.type.filter(mask),
            source=self.source.filter(mask),
            latency_ms=self.latency_ms.filter(mask),
            confidence=self.confidence.filter(mask),
            label=self.label.filter(mask),
            feedback_label=self.feedback_label.filter(mask),
        )

    def _columns(self) -> tuple[pa.Array, ...]:
        return (
            self.version,
            self.device_class,
            self.type,
            self.source,
            self.latency_ms,
            self.confidence,
            self.label,
            self.feedback_label,
        )

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Tuples (version, device_class, type, source, latency_ms, confidence, label,
        feedback_label), the input of ``aggregate``."""
        return zip(*(column.to_pylist() for column in self._columns()), strict=True)
