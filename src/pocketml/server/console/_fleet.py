"""The fleet page's numbers: devices per model version, variant, device class, app
version and platform, sync failures and download outcomes, from the telemetry Parquet files.

Why Parquet: a device's class, app version and platform live on its telemetry chunks and
the version, variant, failure stage and download outcome inside each chunk's events, and
no service answers "devices per ..." today. The exporter's day-partitioned files
(``<home>/telemetry/app=<id>/date=<day>/``, docs/server.md) are the public columnar form
of the same events, so one projected scan of the window's partitions with Arrow's
``group_by`` counts them (no Python loop over events). They lag the database by the
exporter's interval (``telemetry_export.interval_s``), which the page states.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

__all__ = ["FleetSummary", "fleet_summary"]

_COLUMNS = (
    "type", "ts", "model", "version", "variant", "stage", "outcome", "bytes",
    "device_id", "device_class", "app_version", "platform",
)  # fmt: skip
SYNC_STAGES = ("download", "verify", "load")
"""Error stages that mean a device could not bring a package into use."""


@dataclass(frozen=True)
class FleetSummary:
    """Devices and delivery outcomes of one app over ``[since, until)``.

    Each breakdown is a list of (key, devices, events) rows, most devices first, where
    ``devices`` counts distinct device ids that sent an event with that key.
    """

    since: float
    until: float
    devices: int
    events: int
    versions: list[tuple[str, int, int]] = field(default_factory=list)
    variants: list[tuple[str, int, int]] = field(default_factory=list)
    device_classes: list[tuple[str, int, int]] = field(default_factory=list)
    app_versions: list[tuple[str, int, int]] = field(default_factory=list)
    platforms: list[tuple[str, int, int]] = field(default_factory=list)
    sync_failures: list[tuple[str, int, int]] = field(default_factory=list)
    downloads: list[tuple[str, int, int]] = field(default_factory=list)
    download_bytes: int = 0


def _days(since: float, until: float) -> list[str]:
    first = datetime.fromtimestamp(since, UTC).date()
    last = datetime.fromtimestamp(until, UTC).date()
    return [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]


def _read(root: Path, app_id: str, since: float, until: float) -> pa.Table:
    """The window's events (projected columns) of the app's partitions.

    A file's partition is the day its batch was received, which is never before the
    events' (clock-corrected) ts, so partitions from ``since``'s day on hold them all.
    """
    folder = root / f"app={app_id}"
    days = set(_days(since, until))
    files = [
        str(path)
        for day_dir in (sorted(folder.glob("date=*")) if folder.is_dir() else [])
        if day_dir.name.removeprefix("date=") >= min(days)
        for path in sorted(day_dir.glob("part-*.parquet"))
    ]
    if not files:
        return pa.table({name: pa.array([], pa.string()) for name in _COLUMNS})
    dataset = ds.dataset(files, format="parquet")
    names = [name for name in _COLUMNS if name in dataset.schema.names]
    window = (ds.field("ts") >= since) & (ds.field("ts") < until)
    return dataset.to_table(columns=names, filter=window)


def _breakdown(table: pa.Table, keys: list[str], joiner: str = " · ") -> list[tuple[str, int, int]]:
    """(key, distinct devices, events) per value of ``keys`` (joined), most devices first."""
    present = [k for k in keys if k in table.column_names]
    if table.num_rows == 0 or len(present) != len(keys):
        return []
    grouped = table.group_by(keys).aggregate(
        [("device_id", "count_distinct"), ("device_id", "count")]
    )
    rows = []
    for record in grouped.to_pylist():
        label = joiner.join("(none)" if record[k] is None else str(record[k]) for k in keys)
        rows.append(
            (label, int(record["device_id_count_distinct"]), int(record["device_id_count"]))
        )
    rows.sort(key=lambda row: (-row[1], -row[2], row[0]))
    return rows


def fleet_summary(root: Path, app_id: str, since: float, until: float) -> FleetSummary:
    """Devices and delivery outcomes of the app's telemetry in ``[since, until)``.

    Args:
        root: the telemetry directory (``<home>/telemetry``).
        app_id: the app.
        since: unix seconds, inclusive.
        until: unix seconds, exclusive.

    Returns:
        A ``FleetSummary`` (all zeros when nothing was exported for the window).
    """
    table = _read(root, app_id, since, until)
    if table.num_rows == 0:
        return FleetSummary(since=since, until=until, devices=0, events=0)
    kind = table.column("type")
    inference = table.filter(pc.equal(kind, "inference"))
    errors = table.filter(
        pc.and_(pc.equal(kind, "error"), pc.is_in(table.column("stage"), pa.array(SYNC_STAGES)))
    )
    downloads = table.filter(pc.equal(kind, "download"))
    total_bytes = pc.sum(downloads.column("bytes")).as_py() if downloads.num_rows else 0
    return FleetSummary(
        since=since,
        until=until,
        devices=pc.count_distinct(table.column("device_id")).as_py(),
        events=table.num_rows,
        versions=_breakdown(inference, ["model", "version"], " v"),
        variants=_breakdown(inference, ["model", "variant"]),
        device_classes=_breakdown(table, ["device_class"]),
        app_versions=_breakdown(table, ["app_version"]),
        platforms=_breakdown(table, ["platform"]),
        sync_failures=_breakdown(errors, ["stage"]),
        downloads=_breakdown(downloads, ["outcome"]),
        download_bytes=int(total_bytes or 0),
    )
