"""Day-partitioned Parquet files of telemetry, one file per batch, written atomically.

Layout: ``<root>/app=<app_id>/date=<YYYY-MM-DD>/part-<batch_id>.parquet`` (Hive-style
partitions that DuckDB, Spark or Trino read directly). The date is the UTC day the batch
was received; each event keeps its own ``ts``. A file is written under a temporary name
and renamed into place only once the database has accepted the batch.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pocketml.errors import MissingDependencyError
from pocketml.telemetry._types import EVENT_COLUMNS

__all__ = ["ParquetSink", "partition_path"]

_STRING_COLUMNS = {
    "type",
    "model",
    "variant",
    "source",
    "label",
    "prediction_id",
    "stage",
    "message",
    "outcome",
}
_INT_COLUMNS = {"version", "bytes"}


def partition_path(root: Path, app_id: str, received: datetime, batch_id: str) -> Path:
    """Where the Parquet file of one batch lives.

    Args:
        root: the telemetry directory, normally ``<home>/telemetry``.
        app_id: the app.
        received: when the batch arrived (UTC; gives the date partition).
        batch_id: the batch id (restricted to ``[A-Za-z0-9_.:-]``, so a safe file name).

    Returns:
        ``root/app=<id>/date=<YYYY-MM-DD>/part-<batch_id>.parquet``.
    """
    return root / f"app={app_id}" / f"date={received:%Y-%m-%d}" / f"part-{batch_id}.parquet"


class ParquetSink:
    """Writes one Parquet file per batch under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write_pending(
        self,
        app_id: str,
        received: datetime,
        batch_id: str,
        context: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]],
    ) -> tuple[Path, Path]:
        """Write the batch to a temporary file next to its final path.

        Args:
            app_id: the app.
            received: receive time (UTC).
            batch_id: the batch id.
            context: columns shared by every event (device_id, platform, ...).
            events: the validated events.

        Returns:
            (temporary path, final path); call ``commit`` or ``discard`` afterwards.

        Raises:
            MissingDependencyError: pyarrow is not installed.
        """
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingDependencyError("pyarrow", "server", "to write telemetry") from exc
        final = partition_path(self.root, app_id, received, batch_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        columns: dict[str, Any] = {}
        n = len(events)
        for name in EVENT_COLUMNS:
            values = [event.get(name) for event in events]
            if name in _STRING_COLUMNS:
                kind = pa.string()
            elif name in _INT_COLUMNS:
                kind = pa.int64()
            else:
                kind = pa.float64()
            columns[name] = pa.array(values, type=kind)
        for name, value in context.items():
            columns[name] = pa.array([value] * n, type=pa.string())
        columns["received_at"] = pa.array([received] * n, type=pa.timestamp("ms", tz="UTC"))
        tmp = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        pq.write_table(pa.table(columns), tmp)
        return tmp, final

    @staticmethod
    def commit(tmp: Path, final: Path) -> None:
        """Move a pending file into place (atomic rename)."""
        os.replace(tmp, final)

    @staticmethod
    def discard(tmp: Path) -> None:
        """Delete a pending file (the batch was a duplicate or failed)."""
        tmp.unlink(missing_ok=True)
