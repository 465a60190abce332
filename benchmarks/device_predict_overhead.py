"""Overhead of ``LocalModel.predict`` over a bare ``InferenceSession.run`` at batch 1.

Goal (issue 5): the SDK's local hot path (shape check, normalization, argmax, prediction
id, Prediction object, telemetry append) adds at most 25 µs per call.

Setup: an in-process server (SQLite) with the demo digits model (64 features, 10 classes,
ONNX); a Device syncs it; the policy is "local" so no call leaves the process. Both sides
run the SAME InferenceSession: the bare side feeds pre-normalized float32 (1, 64) arrays,
the SDK side the raw float32 (64,) samples, both cycling through the same 256 distinct
inputs (a fresh input per call, as in an app; feeding one array object again and again
flatters ONNX Runtime by several µs on this host). Rounds alternate the two sides (so drift hits
both); the reported overhead is the median over rounds of (SDK mean - bare mean).
Telemetry buffering is included (every 512 calls the buffer is written to SQLite).

Usage: ``python benchmarks/device_predict_overhead.py [--calls 20000] [--rounds 7]``;
prints a table and writes ``benchmarks/results/device_predict_overhead.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from pocketml.config import Settings
from pocketml.device import Device, DeviceFacts
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.sim import centroids, write_demo_build

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_US = 25.0
TOKEN = "pml_op_benchmark"


def _time_calls(fn, pool, calls: int) -> float:  # type: ignore[no-untyped-def]
    feed = itertools.islice(itertools.cycle(pool), calls)
    started = time.perf_counter()
    for arg in feed:
        fn(arg)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build = write_demo_build(work / "build", formats=("onnx",))
        settings = Settings(home=work / "home", operator_token=SecretStr(TOKEN))
        with serve_in_thread(settings) as url:
            with AdminClient(url, TOKEN) as operator:
                created = operator.create_app("bench")
            with AdminClient(url, created.admin_token) as admin:
                version = admin.push_build(build, stage="production")
                admin.request(
                    "PUT",
                    f"/v1/admin/models/digits/versions/{version.version}/policy",
                    json={"hybrid": {"mode": "local"}},
                )
            facts = DeviceFacts(
                platform="linux", os_version="6", app_version="1", formats=("onnx",)
            )
            device = Device(url, created.device_key, facts, work / "device")
            device.sync()
        model = device.model("digits")
        mu = centroids()
        raw_pool = [np.ascontiguousarray(mu[i % 10] * (0.9 + 0.001 * i)) for i in range(256)]
        norm_pool = [(r / 16).reshape(1, 64).astype(np.float32) for r in raw_pool]
        raw = raw_pool[3]
        assert model.predict(raw).source == "local"
        loaded = model._snapshot().local
        assert loaded is not None and loaded.runner.model_format != "tflite"
        session, name = loaded.runner.session, loaded.runner.input_name

        def bare(x: np.ndarray) -> object:
            return session.run(None, {name: x})

        _time_calls(bare, norm_pool, 2000)  # warm-up both paths
        _time_calls(model.predict, raw_pool, 2000)
        bare_us, sdk_us, overhead = [], [], []
        for _ in range(args.rounds):
            b = _time_calls(bare, norm_pool, args.calls)
            s = _time_calls(model.predict, raw_pool, args.calls)
            bare_us.append(b)
            sdk_us.append(s)
            overhead.append(s - b)
        device.close()
    result = {
        "benchmark": "device_predict_overhead",
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "bare_session_run_us_median": statistics.median(bare_us),
        "local_model_predict_us_median": statistics.median(sdk_us),
        "overhead_us_median": statistics.median(overhead),
        "overhead_us_min": min(overhead),
        "overhead_us_max": max(overhead),
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "goal_us": GOAL_US,
        "meets_goal": statistics.median(overhead) <= GOAL_US,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    table = Table(title="LocalModel.predict vs bare InferenceSession.run (batch 1, digits 64→10)")
    for column in ("path", "µs / call (median of rounds)"):
        table.add_column(column)
    table.add_row("InferenceSession.run", f"{result['bare_session_run_us_median']:.2f}")
    table.add_row("LocalModel.predict", f"{result['local_model_predict_us_median']:.2f}")
    table.add_row(
        "overhead",
        f"{result['overhead_us_median']:.2f} (min {result['overhead_us_min']:.2f}, "
        f"max {result['overhead_us_max']:.2f}; goal ≤ {GOAL_US:g})",
    )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "device_predict_overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
