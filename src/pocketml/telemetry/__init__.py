"""pocketml.telemetry: device events and feedback — idempotent intake, storage, aggregates.

``TelemetryService.ingest(app_id, TelemetryBatch(...))`` stores a validated batch once
(database + day-partitioned Parquet), ``record_feedback`` keeps the latest feedback per
prediction, and ``model_metrics`` aggregates per (version, device class): latency
p50/p95, error rate, cloud and fallback shares, confidence and accuracy from feedback.
"""

from pocketml.telemetry._parquet import partition_path
from pocketml.telemetry._types import (
    EVENT_COLUMNS,
    Feedback,
    IngestResult,
    MetricsRow,
    TelemetryBatch,
)
from pocketml.telemetry.aggregate import aggregate
from pocketml.telemetry.service import TelemetryService

__all__ = [
    "EVENT_COLUMNS",
    "Feedback",
    "IngestResult",
    "MetricsRow",
    "TelemetryBatch",
    "TelemetryService",
    "aggregate",
    "partition_path",
]
