"""Values of the telemetry service: a validated batch, feedback, intake results, metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "EVENT_COLUMNS",
    "Feedback",
    "IngestResult",
    "MetricsRow",
    "TelemetryBatch",
]

# Every column an event may fill; an event leaves the ones of other kinds null.
EVENT_COLUMNS: tuple[str, ...] = (
    "type",
    "ts",
    "model",
    "version",
    "variant",
    "source",
    "latency_ms",
    "confidence",
    "label",
    "prediction_id",
    "memory_mb",
    "stage",
    "message",
    "bytes",
    "duration_ms",
    "outcome",
)


@dataclass(frozen=True)
class TelemetryBatch:
    """A batch of already validated events from one device.

    ``events`` are mappings whose keys are a subset of ``EVENT_COLUMNS`` ("type", "ts"
    and "model" always present).
    """

    batch_id: str
    device_id: str
    events: Sequence[Mapping[str, Any]]
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
