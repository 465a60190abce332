"""TelemetryService: idempotent intake of event batches, feedback, and aggregates.

A batch goes to the database in one transaction (duplicates decided by the unique
(app, batch_id) constraint): its batch row and one chunk per model. The database is the
source of truth; the ``TelemetryExporter`` writes the chunks to day-partitioned Parquet
files under ``<home>/telemetry`` afterwards (a background task in the server,
``export_parquet()`` on demand), so intake never writes a file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pocketml.errors import Unavailable
from pocketml.registry import Registry
from pocketml.telemetry._store import TelemetryStore
from pocketml.telemetry._types import Feedback, IngestResult, MetricsRow, TelemetryBatch
from pocketml.telemetry.aggregate import aggregate_events
from pocketml.telemetry.export import TelemetryExporter

__all__ = ["TelemetryService"]

logger = logging.getLogger(__name__)


class TelemetryService:
    """Stores device telemetry and feedback, answers aggregates. ``open()`` before use.

    Args:
        registry: the open registry (its engine holds the telemetry tables).
        parquet_root: the Parquet directory (``<home>/telemetry``); None = database only.
        export_interval_s: seconds between background Parquet exports (``run_exporter``).
        export_pending_events: events ingested on this replica that trigger an export
            before the interval is up.
    """

    def __init__(
        self,
        registry: Registry,
        parquet_root: Path | None,
        *,
        export_interval_s: float = 10.0,
        export_pending_events: int = 500_000,
    ) -> None:
        self.registry = registry
        self.parquet_root = parquet_root
        self.export_interval_s = export_interval_s
        self.export_pending_events = export_pending_events
        self._store: TelemetryStore | None = None
        self._exporter: TelemetryExporter | None = None

    def open(self) -> None:
        """Attach to the registry's database (the registry must be open)."""
        engine = self.registry.store.engine
        self._store = TelemetryStore(engine)
        if self.parquet_root is not None:
            self._exporter = TelemetryExporter(
                engine,
                self.parquet_root,
                interval_s=self.export_interval_s,
                max_pending_events=self.export_pending_events,
            )

    @property
    def exporter(self) -> TelemetryExporter | None:
        """The Parquet exporter (None without a Parquet directory or before ``open()``)."""
        return self._exporter

    def export_parquet(self) -> int:
        """Export every stored chunk not yet in Parquet, now (tests, benchmarks, CLI).

        Returns:
            The number of events written (0 without a Parquet directory, or when
            another replica holds the export lease).

        Raises:
            Unavailable: the database cannot be reached.
        """
        return self._exporter.flush() if self._exporter is not None else 0

    @property
    def store(self) -> TelemetryStore:
        """The telemetry store. Raises Unavailable before ``open()``."""
        if self._store is None:
            raise Unavailable("the telemetry service is not open; call open() first.")
        return self._store

    def ingest(self, app_id: str, batch: TelemetryBatch) -> IngestResult:
        """Store a validated batch once (a second copy of the same batch id is a no-op).

        Args:
            app_id: the device's app.
            batch: the validated batch.

        Returns:
            ``IngestResult(accepted=len(events), duplicate=False)``, or
            ``(0, True)`` when this app stored this batch id before.

        Raises:
            Unavailable: the database cannot be reached (nothing is stored; retry).
        """
        received = datetime.now(UTC)
        context = {
            "platform": batch.platform,
            "device_class": batch.device_class,
            "app_version": batch.app_version,
        }
        stored = self.store.insert_batch(
            app_id, batch.batch_id, batch.device_id, context, batch.events, received
        )
        if not stored:
            logger.info("telemetry batch %s of app %s is a duplicate", batch.batch_id, app_id)
            return IngestResult(accepted=0, duplicate=True)
        if self._exporter is not None:
            self._exporter.note_ingested(len(batch.events))
        return IngestResult(accepted=len(batch.events), duplicate=False)

    def record_feedback(self, app_id: str, feedback: Feedback) -> None:
        """Store the feedback of one prediction; a later one (by ``ts``) replaces it.

        Raises:
            Unavailable: the database cannot be reached.
        """
        self.store.upsert_feedback(app_id, feedback, datetime.now(UTC))

    def model_metrics(
        self, app_id: str, model: str, *, since: float | None = None, until: float | None = None
    ) -> list[MetricsRow]:
        """Aggregates of one model per (version, device class) for events in [since, until).

        Args:
            app_id: the caller's app.
            model: the model name (it need not exist in the registry: telemetry may
                name models the registry has deleted).
            since: unix seconds, inclusive; None = from the start.
            until: unix seconds, exclusive; None = until now.

        Returns:
            One ``MetricsRow`` per group (see ``aggregate``).

        Raises:
            Unavailable: the database cannot be reached.
        """
        return aggregate_events(self.store.events(app_id, model, since, until))
