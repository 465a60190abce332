"""pocketml.telemetry: device events and feedback — idempotent intake, storage, aggregates.

``TelemetryService.ingest(app_id, TelemetryBatch(...))`` stores a validated batch once
(one row per (batch, model) chunk, events columnar in a blob), ``record_feedback`` keeps
the latest feedback per prediction, and ``model_metrics`` aggregates per (version,
device class): latency p50/p95, error rate, cloud and fallback shares, confidence and
accuracy from feedback (``model_series``: the same per bucket, in one read; long
windows merge per-hour/day rollups, see ``_rollup``). ``TelemetryStore.events`` is the
one read path of rollout guardrails and experiments; ``TelemetryExporter`` writes
day-partitioned Parquet files from the database.
"""

from pocketml.telemetry._fleet import SYNC_STAGES, FleetSummary
from pocketml.telemetry._parquet import partition_path
from pocketml.telemetry._rollup import RELATIVE_ERROR
from pocketml.telemetry._store import TelemetryStore
from pocketml.telemetry._types import (
    EVENT_COLUMNS,
    EventRows,
    Feedback,
    IngestResult,
    MetricsRow,
    TelemetryBatch,
)
from pocketml.telemetry.aggregate import aggregate, aggregate_events
from pocketml.telemetry.export import ExportResult, TelemetryExporter, export_database
from pocketml.telemetry.service import MAX_SERIES_BUCKETS, TelemetryService

__all__ = [
    "EVENT_COLUMNS",
    "MAX_SERIES_BUCKETS",
    "RELATIVE_ERROR",
    "SYNC_STAGES",
    "EventRows",
    "ExportResult",
    "Feedback",
    "FleetSummary",
    "IngestResult",
    "MetricsRow",
    "TelemetryBatch",
    "TelemetryExporter",
    "TelemetryService",
    "TelemetryStore",
    "aggregate",
    "aggregate_events",
    "export_database",
    "partition_path",
]
