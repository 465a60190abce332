"""Day-partitioned Parquet files of telemetry, written from chunks, atomically.

Layout: ``<root>/app=<app_id>/date=<YYYY-MM-DD>/part-<first>-<last>.parquet`` (Hive-style
partitions that DuckDB, Spark or Trino read directly), where ``first`` and ``last`` are
the smallest and largest chunk id in the file. The date is the UTC day the batch was
received; each event keeps its own ``ts`` (corrected for the device's clock at intake:
``ts - clock_offset_s`` is the device's own, unless the event was clamped to the receive
time). Feedback is not in these files; it labels the inference of the same
``(device_id, prediction_id)``, never the prediction id alone. A file is written under a
temporary name and renamed into place, so readers never see half a file and a re-export
of the same chunk range replaces the file instead of adding a second copy.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["ExportChunk", "partition_path", "write_partition"]


@dataclass(frozen=True)
class ExportChunk:
    """One decoded chunk with the columns its events share."""

    id: int
    app_id: str
    batch_id: str
    model: str
    device_id: str
    platform: str | None
    device_class: str | None
    app_version: str | None
    received_at: datetime
    events: pa.Table
    clock_offset_s: float = 0.0


def partition_path(root: Path, app_id: str, day: date, first_chunk: int, last_chunk: int) -> Path:
    """Where the Parquet file of a range of one app's chunks of one day lives.

    Args:
        root: the telemetry directory, normally ``<home>/telemetry``.
        app_id: the app.
        day: the UTC day the chunks' batches were received.
        first_chunk: the smallest chunk id in the file.
        last_chunk: the largest chunk id in the file.

    Returns:
        ``root/app=<id>/date=<YYYY-MM-DD>/part-<first>-<last>.parquet``.
    """
    name = f"part-{first_chunk}-{last_chunk}.parquet"
    return root / f"app={app_id}" / f"date={day:%Y-%m-%d}" / name


def _constant(value: object, n: int, kind: pa.DataType) -> pa.Array:
    return pa.nulls(n, kind) if value is None else pa.repeat(pa.scalar(value, kind), n)


def _with_context(chunk: ExportChunk) -> pa.Table:
    events = chunk.events
    n = events.num_rows
    table = events.add_column(2, "model", _constant(chunk.model, n, pa.string()))
    for name, value in (
        ("device_id", chunk.device_id),
        ("platform", chunk.platform),
        ("device_class", chunk.device_class),
        ("app_version", chunk.app_version),
        ("batch_id", chunk.batch_id),
    ):
        table = table.append_column(name, _constant(value, n, pa.string()))
    table = table.append_column("chunk_id", _constant(chunk.id, n, pa.int64()))
    offset = _constant(chunk.clock_offset_s, n, pa.float64())
    table = table.append_column("clock_offset_s", offset)
    received = _constant(chunk.received_at, n, pa.timestamp("ms", tz="UTC"))
    return table.append_column("received_at", received)


def write_partition(root: Path, chunks: Sequence[ExportChunk]) -> Path:
    """Write the chunks (one app, one day) to their partition file, atomically.

    Args:
        root: the telemetry directory.
        chunks: decoded chunks of one app and one receive day, in id order.

    Returns:
        The final path (an existing file of the same name is replaced).
    """
    first = chunks[0]
    final = partition_path(
        root, first.app_id, first.received_at.date(), chunks[0].id, chunks[-1].id
    )
    final.parent.mkdir(parents=True, exist_ok=True)
    table = pa.concat_tables([_with_context(chunk) for chunk in chunks])
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
