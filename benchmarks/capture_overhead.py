"""Cost of consented sample capture on ``LocalModel.predict`` (issue 14 item 1).

Goal (contract): keep the predict path cheap. With the capture policy off there is no
hook at all; with it on, a prediction that is not kept pays a consent flag, the ``when``
test and one RNG draw; a kept one pays a copy, the redactor and one SQLite insert.

Setup: an in-process server (SQLite) with the demo digits model (ONNX, policy ``local``);
one Device syncs it. Each scenario sets the version's capture policy, syncs, and times
``predict`` over 256 distinct raw inputs; scenarios alternate within each round (so drift
hits all of them) and the table reports the median over rounds and the difference to
"capture off" measured in the same round.

Usage: ``python benchmarks/capture_overhead.py [--calls 5000] [--rounds 5]``; prints a
table and writes ``benchmarks/results/capture_overhead.json``.
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
from typing import Any

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
TOKEN = "pml_op_benchmark"
_ON = {"enabled": True, "wifi_only": False, "max_bytes_per_day": 10**10}
SCENARIOS: dict[str, tuple[dict[str, Any], bool]] = {
    "capture off (policy disabled)": ({"enabled": False}, True),
    "policy on, no consent": ({**_ON, "when": "all"}, False),
    "on, rate 0 (sampled out)": ({**_ON, "when": "all", "rate": 0.0}, True),
    "on, low_confidence (not eligible)": ({**_ON, "when": "low_confidence"}, True),
    "on, feedback mode (held in memory)": ({**_ON, "when": "feedback", "max_hold": 200}, True),
    "on, every prediction written": ({**_ON, "when": "all", "rate": 1.0}, True),
}


def _time_calls(fn: Any, pool: list[np.ndarray], calls: int) -> float:
    feed = itertools.islice(itertools.cycle(pool), calls)
    started = time.perf_counter()
    for arg in feed:
        fn(arg)
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    deltas: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    mu = centroids()
    pool = [np.ascontiguousarray(mu[i % 10] * (0.9 + 0.001 * i)) for i in range(256)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build = write_demo_build(work / "build", formats=("onnx",))
        settings = Settings(home=work / "home", operator_token=SecretStr(TOKEN))
        with serve_in_thread(settings) as url:
            with AdminClient(url, TOKEN) as operator:
                created = operator.create_app("bench")
            admin = AdminClient(url, created.admin_token)
            version = admin.push_build(build, stage="production").version
            facts = DeviceFacts(
                platform="linux", os_version="6", app_version="1", formats=("onnx",)
            )
            device = Device(url, created.device_key, facts, work / "device", seed=0)
            model = device.model("digits")
            for _ in range(args.rounds):
                base = None
                for name, (capture, consent) in SCENARIOS.items():
                    admin.set_policy("digits", version, hybrid={"mode": "local"}, capture=capture)
                    device.sync()
                    device.set_consent(consent)
                    _time_calls(model.predict, pool, 500)  # warm the new snapshot
                    us = _time_calls(model.predict, pool, args.calls)
                    base = us if base is None else base
                    times[name].append(us)
                    deltas[name].append(us - base)
                    device.capture.forget()  # an empty queue for the next scenario
            admin.close()
            device.close()
    result = {
        "benchmark": "capture_overhead",
        "calls_per_round": args.calls,
        "rounds": args.rounds,
        "scenarios": {
            name: {
                "predict_us_median": statistics.median(times[name]),
                "over_off_us_median": statistics.median(deltas[name]),
            }
            for name in SCENARIOS
        },
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    table = Table(title="LocalModel.predict with consented capture (digits 64→10, batch 1)")
    for column in ("scenario", "µs / call", "over capture off"):
        table.add_column(column)
    for name, row in result["scenarios"].items():
        table.add_row(name, f"{row['predict_us_median']:.1f}", f"{row['over_off_us_median']:+.1f}")
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "capture_overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
