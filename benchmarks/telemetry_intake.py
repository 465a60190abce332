"""Telemetry intake with 1,000-event batches into the default store (SQLite + Parquet).

Goal (issue 5): >= 200,000 events/s with one server process, nothing lost.

HTTP run: one pocketml server (one uvicorn worker with uvloop + httptools, default
SQLite home, the Parquet exporter running in the background as configured by default)
pinned to CPU 0 with ``taskset -c 0``; the load generator, ``wrk`` with a Lua script,
pinned to CPU 1 with ``taskset -c 1`` (the issue's reference setup; without taskset or a
second core both run unpinned). wrk posts one 1,000-event batch per request over
``CONNECTIONS`` keep-alive connections for ``DURATION_S`` seconds; the Lua script puts
a fresh batch id into every request (prefix .. id .. suffix of a template body), so
every request is a distinct batch that must be stored. Without wrk, the Python httpx
generator posts ``FALLBACK_BATCHES`` distinct bodies.

Afterwards (the server stopped, so its exporter flushed): every event accepted (202
answers x 1,000) must be in the database, and the Parquet files must hold exactly the
database's events. The database may hold a few batches more than were acknowledged: the
ones in flight when wrk stopped (stored, answer never read; at most one per connection).

In-process stages (this process pinned to CPU 0 while it measures), per 1,000-event
batch: parse + validate (msgspec decode, and orjson + pydantic ``TelemetryRequest``, the
contract and the fallback, for comparison), chunk encoding (Arrow IPC + LZ4), the
database transaction (batch row + chunk row, SQLite), and the Parquet export; the
previous design's store (1,000 rows ``executemany`` into the indexed
``telemetry_events`` table) as the baseline ratio; and the metrics of 1,000,000 events
read back (decoded, then from the chunk cache).

Prints Rich tables; writes ``benchmarks/results/telemetry_intake.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import (
    LOAD_CPU,
    SERVER_CPU,
    WRK_SUMMARY_LUA,
    LoadResult,
    _run_python,
    pinned,
    provision,
    server,
    variant_entry,
    write_result,
    wrk_result,
)

EVENTS = 1_000
CONNECTIONS = 8
DURATION_S = 10
FALLBACK_BATCHES = 300
STAGE_REPEATS = 200
METRICS_EVENTS = 1_000_000
GOAL = 200_000
SCHEMA = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": [str(i) for i in range(10)]}],
}
_PLACEHOLDER = "BATCH_ID_PLACEHOLDER"


def events_of(i: int) -> list[dict[str, Any]]:
    """EVENTS inference events of batch ``i``."""
    return [
        {
            "type": "inference",
            "ts": 1_795_240_000.0 + j,
            "model": "digits",
            "version": 1,
            "variant": "tflite-fp32",
            "source": ("local", "cloud", "fallback")[j % 3],
            "latency_ms": 3.0 + (j % 17),
            "confidence": 0.5 + (j % 50) / 100,
            "label": str(j % 10),
            "prediction_id": f"b{i}-p{j}",
        }
        for j in range(EVENTS)
    ]


def batch(i: int, batch_id: str | None = None) -> bytes:
    """One batch of EVENTS inference events with a unique batch id."""
    return orjson.dumps(
        {
            "batch_id": batch_id or f"batch-{i:06d}",
            "device_id": f"device-{i % 97:04d}",
            "device": {"platform": "android", "device_class": "android-mid"},
            "events": events_of(i),
        }
    )


_LUA = """
local f = io.open("%(template)s", "r")
local template = f:read("*a")
f:close()
local at = string.find(template, "%(placeholder)s", 1, true)
local prefix = string.sub(template, 1, at - 1)
local suffix = string.sub(template, at + %(placeholder_len)d)
local n = 0
accepted = 0  -- globals: read by done() through thread:get
other = 0
local threads = {}
setup = function(thread)
  threads[#threads + 1] = thread
  thread:set("tid", #threads)
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/telemetry", nil, prefix .. "%(run)s-" .. tid .. "-" .. n .. suffix)
end
response = function(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end
done = function(summary, latency, requests)
%(summary)s
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("accepted") end
  io.write("ACC " .. total .. "\\n")
end
"""


def run_wrk(url: str, key: str) -> tuple[LoadResult, int]:
    """wrk with distinct batch ids; returns the load result and the 202 count."""
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.json"
        template.write_bytes(batch(0, _PLACEHOLDER))
        script = Path(tmp) / "telemetry.lua"
        script.write_text(
            _LUA
            % {
                "template": template,
                "placeholder": _PLACEHOLDER,
                "placeholder_len": len(_PLACEHOLDER),
                "key": key,
                "run": f"run-{uuid.uuid4().hex[:8]}",
                "summary": WRK_SUMMARY_LUA,
            }
        )
        command = ["wrk", "-t", "1", "-c", str(CONNECTIONS), "-d", f"{DURATION_S}s"]
        command += ["--timeout", "30s", "-s", str(script), url]
        out = subprocess.run(
            pinned(command, LOAD_CPU), capture_output=True, text=True, check=True
        ).stdout
    # wrk counts one "request" per response; every response is one batch
    result, extra = wrk_result(out, ("ACC",))
    return result, int(extra["ACC"])


def _per_batch_ms(fn: Callable[[int], object], repeats: int = STAGE_REPEATS) -> float:
    fn(-1)
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    return (time.perf_counter() - start) / repeats * 1000


def measure_stages(tmp: Path) -> tuple[dict[str, float], dict[str, float]]:
    """In this process: ms per 1,000-event batch of parse, validate, encode, store and
    export; and seconds to aggregate METRICS_EVENTS events (cold, then cached)."""
    from pocketml.db import create_engine, run_migrations
    from pocketml.server.device_api._telemetry_check import decode_batch
    from pocketml.server.schemas_device import TelemetryRequest
    from pocketml.telemetry import TelemetryExporter, TelemetryStore
    from pocketml.telemetry._chunks import draft_chunks

    body = batch(1)
    decoded = decode_batch(body)
    assert decoded is not None
    stages = {
        "msgspec decode + validate": _per_batch_ms(lambda _: decode_batch(body)),
        "orjson parse": _per_batch_ms(lambda _: orjson.loads(body)),
        "pydantic validate (the fallback)": _per_batch_ms(
            lambda _: TelemetryRequest.model_validate(orjson.loads(body)), 20
        )
        - _per_batch_ms(lambda _: orjson.loads(body), 100),
        "chunk encode (Arrow IPC + LZ4)": _per_batch_ms(lambda _: draft_chunks(decoded.events)),
    }
    engine = create_engine(f"sqlite:///{tmp / 'stages.db'}")
    run_migrations(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO apps (id, name, admin_token_sha256, device_key_sha256, created_at) "
            "VALUES ('app-bench', 'bench', 'x', 'y', '2026-01-01 00:00:00')"
        )
    store = TelemetryStore(engine)
    received = datetime.now(UTC)
    context: dict[str, str | None] = {"platform": "android", "device_class": "android-mid"}
    stages["store (encode + transaction)"] = _per_batch_ms(
        lambda i: store.insert_batch(
            "app-bench", f"stage-{i}", "device-0001", context, decoded.events, received
        )
    )
    stages["transaction only"] = (
        stages["store (encode + transaction)"] - stages["chunk encode (Arrow IPC + LZ4)"]
    )
    exporter = TelemetryExporter(engine, tmp / "telemetry")
    start = time.perf_counter()
    exported = exporter.flush()
    stages["Parquet export"] = (time.perf_counter() - start) / exported * EVENTS * 1000
    metrics = _metrics_seconds(engine, decoded.events)
    engine.dispose()
    stages["previous store: 1,000 rows executemany"] = _legacy_store_ms(tmp, decoded.events)
    return stages, metrics


def _metrics_seconds(engine: Any, events: Any) -> dict[str, float]:
    """Seconds to aggregate METRICS_EVENTS events: chunks decoded (cold), then cached."""
    from pocketml.telemetry import TelemetryStore, aggregate_events

    store = TelemetryStore(engine)
    received = datetime.now(UTC)
    have = store.count_events("app-bench")
    for i in range((METRICS_EVENTS - have) // EVENTS):
        store.insert_batch("app-bench", f"more-{i}", "device-0001", {}, events, received)
    out = {}
    for label in ("cold", "warm"):
        start = time.perf_counter()
        rows = store.events("app-bench", "digits")
        aggregate_events(rows)
        out[label] = time.perf_counter() - start
    out["events"] = len(rows)
    return out


def _legacy_store_ms(tmp: Path, events: Any) -> float:
    """The previous design: one row per event into the indexed events table (SQLite)."""
    from pocketml.telemetry import EVENT_COLUMNS

    conn = sqlite3.connect(tmp / "legacy.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    columns = ("app_id", "batch_id", "device_id", *EVENT_COLUMNS, "platform", "device_class")
    conn.execute(
        "CREATE TABLE telemetry_events (id INTEGER PRIMARY KEY, "
        + ", ".join(f'"{c}"' for c in columns)
        + ")"
    )
    conn.execute("CREATE INDEX ix ON telemetry_events (app_id, model, ts)")
    dicts = [{"type": e.type, **{f: getattr(e, f) for f in e.__struct_fields__}} for e in events]
    sql = (
        f"INSERT INTO telemetry_events ({', '.join(repr(c) for c in columns)}) "
        f"VALUES ({', '.join('?' * len(columns))})"
    )

    def store(i: int) -> None:
        shared = ("app-bench", f"b-{i}", "device-0001")
        rows = [(*shared, *(e.get(c) for c in EVENT_COLUMNS), "android", "mid") for e in dicts]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")

    try:
        return _per_batch_ms(store, 50)
    finally:
        conn.close()


def count_stored(home: Path) -> tuple[int, int]:
    """(events in the server's database, of which already exported to Parquet)."""
    from pocketml.config import Settings
    from pocketml.db import create_engine

    engine = create_engine(Settings(home=home).resolved_database_url)
    try:
        with engine.connect() as conn:
            stored, exported = conn.exec_driver_sql(
                "SELECT COALESCE(SUM(event_count), 0), COALESCE(SUM(CASE WHEN id <= "
                "(SELECT COALESCE(MAX(watermark), 0) FROM telemetry_exports) "
                "THEN event_count ELSE 0 END), 0) FROM telemetry_chunks"
            ).one()
            return int(stored), int(exported)
    finally:
        engine.dispose()


def run_http(tmp: Path) -> dict[str, Any]:
    """The HTTP run; returns its numbers."""
    home = tmp / "home"
    model_file = tmp / "m.bin"
    model_file.write_bytes(b"0" * 1024)
    with server("pocketml", str(home), json.dumps({})) as (_, url):
        _, key = provision(
            url, "digits", SCHEMA, [variant_entry(model_file, "tflite-fp32", "tflite", "device")]
        )
        if shutil.which("wrk"):
            result, accepted_batches = run_wrk(url, key)
        else:
            bodies = [batch(i, f"batch-{uuid.uuid4().hex[:12]}") for i in range(FALLBACK_BATCHES)]
            result = _run_python(
                url,
                "/v1/telemetry",
                {"Authorization": f"Bearer {key}"},
                bodies,
                CONNECTIONS,
                FALLBACK_BATCHES,
            )
            accepted_batches = result.requests - result.errors
        _, exported_during_run = count_stored(home)  # the server still runs
    # the server has stopped: its exporter flushed on shutdown
    files = list((home / "telemetry").rglob("*.parquet"))
    accepted = accepted_batches * EVENTS
    stored, _ = count_stored(home)
    in_parquet = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return {
        "load": result.to_dict(),
        "events_per_s": accepted / (result.requests / result.rps) if result.rps else 0.0,
        "accepted_events": accepted,
        "stored_in_database": stored,
        "stored_in_parquet": in_parquet,
        "parquet_files": len(files),
        # exported by the background exporter while the load ran (the rest on shutdown)
        "exported_during_run": exported_during_run,
        # accepted (202) but missing from the database or from Parquet
        "lost": max(0, accepted - min(stored, in_parquet)),
        # stored, but wrk stopped before reading the answer (in flight at the end)
        "stored_unacknowledged": stored - accepted,
        "database_equals_parquet": stored == in_parquet,
    }


def main() -> None:
    """Measure the stages in-process, then the HTTP run; print and write the results."""
    console = Console(width=160)
    with tempfile.TemporaryDirectory() as tmp:
        cpus = os.sched_getaffinity(0)
        if len(cpus) >= 2:  # measure the stages on the server's core, like the HTTP run
            os.sched_setaffinity(0, {int(SERVER_CPU)})
        try:
            stages, metrics = measure_stages(Path(tmp))
        finally:
            os.sched_setaffinity(0, cpus)
        http = run_http(Path(tmp))
    load = http["load"]
    table = Table(
        title=f"telemetry intake over HTTP: {EVENTS:,}-event batches, {CONNECTIONS} connections, "
        f"server on CPU 0, load on CPU 1"
    )
    for column in (
        "tool",
        "batches/s",
        "events/s",
        "goal",
        "p50 ms",
        "p99 ms",
        "errors",
        "accepted",
        "in database",
        "in Parquet",
        "files",
        "exported during run",
        "lost",
        "in flight at stop",
    ):
        table.add_column(column, justify="left" if column == "tool" else "right")
    table.add_row(
        load["tool"],
        f"{load['rps']:,.0f}",
        f"{http['events_per_s']:,.0f}",
        f"{http['events_per_s'] / GOAL:.0%}",
        f"{load['p50_ms']:.1f}",
        f"{load['p99_ms']:.1f}",
        str(load["errors"]),
        f"{http['accepted_events']:,}",
        f"{http['stored_in_database']:,}",
        f"{http['stored_in_parquet']:,}",
        str(http["parquet_files"]),
        f"{http['exported_during_run']:,}",
        str(http["lost"]),
        f"{http['stored_unacknowledged']:,}",
    )
    console.print(table)
    stage_table = Table(title="in-process stages per 1,000-event batch (one core)")
    stage_table.add_column("stage")
    stage_table.add_column("ms", justify="right")
    for name, ms in stages.items():
        stage_table.add_row(name, f"{ms:.2f}")
    baseline = stages["previous store: 1,000 rows executemany"]
    ratio = baseline / stages["store (encode + transaction)"]
    console.print(stage_table)
    console.print(f"store: {ratio:.1f}x faster than the previous one-row-per-event design")
    console.print(
        f"metrics over {metrics['events']:,.0f} events (decode, window, feedback join, "
        f"aggregate): {metrics['cold']:.2f} s cold, {metrics['warm']:.2f} s with the "
        "decoded chunks cached"
    )
    path = write_result(
        "telemetry_intake",
        {
            "events_per_batch": EVENTS,
            "connections": CONNECTIONS,
            "duration_s": DURATION_S,
            "pinning": {"server_cpu": 0, "load_cpu": 1, "cpus": os.cpu_count()},
            "goal": {"events_per_s": GOAL, "lost": 0},
            **http,
            "stages_ms_per_1000_events": stages,
            "metrics_s": metrics,
            "store_speedup_vs_previous": ratio,
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
