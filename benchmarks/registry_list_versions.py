"""List-endpoint latency with 10,000 versions of one model, through a real server.

The versions are registered with the ``Registry`` service directly (each a tiny variant
with its signed package) on a SQLite home, then a ``pocketml server`` subprocess on that
home answers 200 ``GET /v1/admin/models/{name}/versions`` requests (pages of 50 at
offsets spread over the whole list, a stage filter on a quarter of them). Reported: p50
and p95 latency in ms. Prints a Rich table and writes
``benchmarks/results/registry_list_versions.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server_process import server_process

from pocketml.protect import MasterKey
from pocketml.registry import (
    ModelCreate,
    Registry,
    VariantUpload,
    VersionCreate,
    open_artifact_store,
)
from pocketml.server.client import AdminClient

VERSIONS = 10_000
REQUESTS = 200
SCHEMA = {
    "format_version": 1,
    "name": "bench",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [None, 4], "layout": "NC"}],
    "outputs": [{"name": "p", "kind": "probabilities", "labels": ["a", "b"]}],
}


def populate(home: Path) -> tuple[str, float]:
    """Register VERSIONS versions; return the admin token and the seconds it took."""
    home.mkdir(parents=True)
    registry = Registry(
        f"sqlite:///{home / 'pocketml.db'}",
        open_artifact_store(str(home / "artifacts")),
        MasterKey.load_or_create(home / "master.key"),
    )
    registry.open()
    started = time.perf_counter()
    try:
        created = registry.create_app("bench")
        registry.create_model(created.app.id, ModelCreate(name="bench", schema=SCHEMA))
        for number in range(1, VERSIONS + 1):
            path = home / "model.onnx"
            data = number.to_bytes(4, "big") * 16
            path.write_bytes(data)
            meta = VersionCreate(
                metrics={"accuracy": 0.9},
                variants=[
                    VariantUpload(
                        name="v",
                        format="onnx",
                        precision="fp32",
                        sha256=hashlib.sha256(data).hexdigest(),
                    )
                ],
            )
            registry.push_version(created.app.id, "bench", meta, {"v": path})
            if number % 2000 == 0:
                print(f"registered {number} versions", flush=True)
        if VERSIONS >= 2:
            registry.set_stage(created.app.id, "bench", VERSIONS // 2, "production")
    finally:
        registry.close()
    return created.admin_token, time.perf_counter() - started


def measure(url: str, token: str) -> list[float]:
    """Time REQUESTS list requests; return their latencies in ms."""
    rng = random.Random(0)
    latencies = []
    with AdminClient(url, token) as client:
        client.list_versions("bench")  # warm the connection and caches
        for index in range(REQUESTS):
            offset = rng.randrange(0, VERSIONS - 50)
            stage = "candidate" if index % 4 == 0 else None
            started = time.perf_counter()
            page = client.list_versions("bench", stage=stage, limit=50, offset=offset)
            latencies.append((time.perf_counter() - started) * 1000)
            assert len(page.items) == 50
    return latencies


def main() -> None:
    """Run the benchmark, print the table, write the JSON."""
    with tempfile.TemporaryDirectory(prefix="pocketml-bench-") as tmp:
        home = Path(tmp) / "home"
        token, populate_s = populate(home)
        with server_process(home) as (_, url):
            latencies = measure(url, token)
    quantiles = statistics.quantiles(latencies, n=100)
    result = {
        "versions": VERSIONS,
        "requests": REQUESTS,
        "page_size": 50,
        "p50_ms": statistics.median(latencies),
        "p95_ms": quantiles[94],
        "max_ms": max(latencies),
        "populate_s": populate_s,
    }
    table = Table(title=f"GET .../versions with {VERSIONS} versions (SQLite, pages of 50)")
    for column in ("requests", "p50 ms", "p95 ms", "max ms", "populate s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(REQUESTS),
        f"{result['p50_ms']:.1f}",
        f"{result['p95_ms']:.1f}",
        f"{result['max_ms']:.1f}",
        f"{populate_s:.0f}",
    )
    Console().print(table)
    out = Path(__file__).resolve().parent / "results" / "registry_list_versions.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
