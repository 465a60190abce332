"""TelemetryService: idempotent intake of event batches, feedback, and aggregates.

A batch goes to the database (one transaction, duplicates decided by the unique
(app, batch_id) constraint) AND to a day-partitioned Parquet file under
``<home>/telemetry``: the Parquet file is written first under a temporary name and
renamed into place only after the database accepted the batch, so a retried or
duplicate batch never leaves a second file.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from pocketml.errors import Unavailable
from pocketml.registry import Registry
from pocketml.telemetry._parquet import ParquetSink
from pocketml.telemetry._store import TelemetryStore
from pocketml.telemetry._types import Feedback, IngestResult, MetricsRow, TelemetryBatch
from pocketml.telemetry.aggregate import aggregate

__all__ = ["TelemetryService"]

logger = logging.getLogger(__name__)


class TelemetryService:
    """Stores device telemetry and feedback, answers aggregates. ``open()`` before use.

    Args:
        registry: the open registry (its engine holds the telemetry tables).
        parquet_root: the Parquet directory (``<home>/telemetry``); None = database only.
    """

    def __init__(self, registry: Registry, parquet_root: Path | None) -> None:
        self.registry = registry
        self.parquet_root = parquet_root
        self._store: TelemetryStore | None = None
        self._sink = ParquetSink(parquet_root) if parquet_root is not None else None

    def open(self) -> None:
        """Attach to the registry's database (the registry must be open)."""
        self._store = TelemetryStore(self.registry.store.engine)

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
            "device_id": batch.device_id,
            "platform": batch.platform,
            "device_class": batch.device_class,
            "app_version": batch.app_version,
        }
        pending = None
        if self._sink is not None:
            pending = self._sink.write_pending(
                app_id, received, batch.batch_id, context, batch.events
            )
        try:
            stored = self.store.insert_batch(
                app_id, batch.batch_id, batch.device_id, context, batch.events, received
            )
        except BaseException:
            if pending is not None:
                ParquetSink.discard(pending[0])
            raise
        if pending is not None:
            if stored:
                ParquetSink.commit(*pending)
            else:
                ParquetSink.discard(pending[0])
        if not stored:
            logger.info("telemetry batch %s of app %s is a duplicate", batch.batch_id, app_id)
            return IngestResult(accepted=0, duplicate=True)
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
        return aggregate(self.store.metric_rows(app_id, model, since, until))
