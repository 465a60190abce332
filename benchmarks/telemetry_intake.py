"""Telemetry intake with 1,000-event batches into the default store (SQLite + Parquet).

One pocketml server (uvicorn worker, subprocess, default SQLite home) receives
``BATCHES`` distinct batches of 1,000 inference events from a separate process (asyncio
+ httpx, keep-alive, concurrency 8; every batch id is unique so each must be stored).
Afterwards every event is counted in the database (metrics route) and in the Parquet
files. Goal: >= 200,000 events/s, nothing lost. Prints a Rich table; writes
``benchmarks/results/telemetry_intake.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import httpx
import orjson
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _device_load import _run_python, provision, server, variant_entry, write_result

BATCHES = 300
EVENTS = 1_000
CONCURRENCY = 8
SCHEMA = {
    "format_version": 1,
    "name": "digits",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 64], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": [str(i) for i in range(10)]}],
}


def batch(i: int) -> bytes:
    """One batch of EVENTS inference events with a unique batch id."""
    events = [
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
    return orjson.dumps(
        {
            "batch_id": f"batch-{i:06d}",
            "device_id": f"device-{i % 97:04d}",
            "device": {"platform": "android", "device_class": "android-mid"},
            "events": events,
        }
    )


def main() -> None:
    """Send the batches, then count what was stored."""
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        model_file = Path(tmp) / "m.bin"
        model_file.write_bytes(b"0" * 1024)
        with server("pocketml", str(home), json.dumps({})) as (_, url):
            admin, key = provision(
                url,
                "digits",
                SCHEMA,
                [variant_entry(model_file, "tflite-fp32", "tflite", "device")],
            )
            bodies = [batch(i) for i in range(BATCHES)]
            result = _run_python(
                url,
                "/v1/telemetry",
                {"Authorization": f"Bearer {key}"},
                bodies,
                CONCURRENCY,
                BATCHES,
            )
            groups = httpx.get(
                f"{url}/v1/admin/models/digits/metrics",
                headers={"Authorization": f"Bearer {admin}"},
                timeout=120,
            ).json()
        stored = sum(g["count"] for g in groups["groups"])
        files = list((home / "telemetry").rglob("*.parquet"))
        parquet_rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    events_per_s = result.rps * EVENTS
    table = Table(
        title=f"telemetry intake, {BATCHES} batches x {EVENTS:,} events, concurrency {CONCURRENCY}"
    )
    for column in (
        "batches/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "in database",
        "in Parquet",
        "files",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result.rps:,.0f}",
        f"{events_per_s:,.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        str(result.errors),
        f"{stored:,}",
        f"{parquet_rows:,}",
        str(len(files)),
    )
    console.print(table)
    path = write_result(
        "telemetry_intake",
        {
            "batches": BATCHES,
            "events_per_batch": EVENTS,
            "concurrency": CONCURRENCY,
            "goal": {"events_per_s": 200_000, "lost": 0},
            "events_per_s": events_per_s,
            "load": result.to_dict(),
            "stored_in_database": stored,
            "stored_in_parquet": parquet_rows,
            "parquet_files": len(files),
            "lost": BATCHES * EVENTS - stored,
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
