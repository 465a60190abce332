"""The fleet: devices per model version, variant, device class, app version and platform,
sync failures and download outcomes, from the database (no Parquet lag).

Distinct devices do not add up across hours, so a span's rollup keeps, per breakdown
value, the devices that reported it with their event counts (a ``device table``: one row
per (dimension, value, device)); any window is the union of its closed spans' tables
(``_rollup.plan``, stored as ``telemetry_rollups`` rows of model ``FLEET``) plus the raw
events of the rest, grouped once with Arrow. Exact: the same numbers as counting the
window's events directly. The cost grows with devices x breakdown values x spans, not
with events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FLEET", "SYNC_STAGES", "FleetSummary", "device_table", "summarise_fleet"]

FLEET = ""
"""The ``model`` of an app's fleet rollups (no model has an empty name)."""
SYNC_STAGES = ("download", "verify", "load")
"""Error stages that mean a device could not bring a package into use."""
_TABLE = pa.schema(
    [
        ("dim", pa.string()),
        ("key", pa.string()),
        ("device_id", pa.string()),
        ("events", pa.int64()),
        ("bytes", pa.int64()),
    ]
)
_DIMS = (
    "all",
    "versions",
    "variants",
    "device_classes",
    "app_versions",
    "platforms",
    "sync_failures",
    "downloads",
)


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


def _label(table: pa.Table, keys: list[str], joiner: str) -> pa.Array:
    parts = [
        pc.fill_null(pc.cast(table.column(k), pa.string()), "(none)").combine_chunks() for k in keys
    ]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, joiner)


def _empty() -> pa.Table:
    return _TABLE.empty_table()


def device_table(events: pa.Table) -> pa.Table:
    """The device table of some events (columns type, model, version, variant, stage,
    outcome, bytes, device_id, device_class, app_version, platform)."""
    if events.num_rows == 0:
        return _empty()
    kind = events.column("type")
    inference = events.filter(pc.equal(kind, "inference"))
    errors = events.filter(
        pc.and_(
            pc.equal(kind, "error"),
            pc.fill_null(pc.is_in(events.column("stage"), pa.array(SYNC_STAGES)), False),
        )
    )
    downloads = events.filter(pc.equal(kind, "download"))
    frames = []
    for dim, part, keys, joiner in (
        ("all", events, None, ""),
        ("versions", inference, ["model", "version"], " v"),
        ("variants", inference, ["model", "variant"], " · "),
        ("device_classes", events, ["device_class"], ""),
        ("app_versions", events, ["app_version"], ""),
        ("platforms", events, ["platform"], ""),
        ("sync_failures", errors, ["stage"], ""),
        ("downloads", downloads, ["outcome"], ""),
    ):
        if part.num_rows == 0:
            continue
        key = pa.nulls(part.num_rows, pa.string()).fill_null("") if keys is None else None
        table = pa.table(
            {
                "key": key if key is not None else _label(part, keys or [], joiner),
                "device_id": part.column("device_id"),
                "bytes": pc.fill_null(pc.cast(part.column("bytes"), pa.int64()), 0),
            }
        )
        grouped = table.group_by(["key", "device_id"]).aggregate(
            [("device_id", "count"), ("bytes", "sum")]
        )
        frames.append(
            pa.table(
                {
                    "dim": pa.array([dim] * grouped.num_rows, pa.string()),
                    "key": grouped.column("key"),
                    "device_id": grouped.column("device_id"),
                    "events": pc.cast(grouped.column("device_id_count"), pa.int64()),
                    "bytes": pc.cast(grouped.column("bytes_sum"), pa.int64()),
                },
                schema=_TABLE,
            )
        )
    return pa.concat_tables(frames) if frames else _empty()


def summarise_fleet(tables: list[pa.Table], since: float, until: float) -> FleetSummary:
    """Merge device tables (of disjoint spans) into the window's ``FleetSummary``."""
    table = pa.concat_tables([_empty(), *tables])
    if table.num_rows == 0:
        return FleetSummary(since=since, until=until, devices=0, events=0)
    grouped = table.group_by(["dim", "key"]).aggregate(
        [("device_id", "count_distinct"), ("events", "sum"), ("bytes", "sum")]
    )
    rows: dict[str, list[tuple[str, int, int]]] = {dim: [] for dim in _DIMS}
    download_bytes = 0
    for record in grouped.to_pylist():
        devices, events = int(record["device_id_count_distinct"]), int(record["events_sum"])
        rows[record["dim"]].append((record["key"], devices, events))
        if record["dim"] == "downloads":
            download_bytes += int(record["bytes_sum"] or 0)
    for values in rows.values():
        values.sort(key=lambda row: (-row[1], -row[2], row[0]))
    total = rows["all"][0] if rows["all"] else ("", 0, 0)
    return FleetSummary(
        since=since,
        until=until,
        devices=total[1],
        events=total[2],
        versions=rows["versions"],
        variants=rows["variants"],
        device_classes=rows["device_classes"],
        app_versions=rows["app_versions"],
        platforms=rows["platforms"],
        sync_failures=rows["sync_failures"],
        downloads=rows["downloads"],
        download_bytes=download_bytes,
    )
