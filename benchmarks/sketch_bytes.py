"""Bytes a device sends per monitored feature per day, and what sketching costs per input.

Goal (issue 13): at most 64 B per feature per device-day at one ``profile`` event per hour.

Setup: two reference profiles as the SDK builds them, a table (``NC``, 16 columns, so 16
feature blocks + 5 PCA projections + the class + the confidence) and an image (``NCHW``,
3 channels: brightness, contrast and blur per channel + projections + class + confidence).
One device-day spreads N scored inputs (10, 100, 1,000) over 24 hours at random (seeded);
every hour with at least one input closes one window, sent as one ``profile`` event
exactly as the SDK's ``Sketcher`` builds it. Reported per monitored block ("feature":
every block of the layout, projections, class and confidence included) and per day:

- ``sketch`` B: the ``sketch`` string alone (what the encoding decides);
- ``event`` B: the whole event as compact JSON (type, ts, model, version, n, epsilon);

without DP, and with local DP at epsilon = 1 per device-day (1/24 per hourly window:
two-sided geometric noise on every count, so no zero runs survive and counts are ~10^3).

The cost per scored input is ``SketchTracker.add`` on the table profile (features, bins,
projections, class, confidence; median of rounds), with the host's load average (the
machine is shared, so it is a number for people, not a gate).

Usage: ``python benchmarks/sketch_bytes.py [--devices 20] [--rounds 5]``; prints a table
and writes ``benchmarks/results/sketch_bytes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from pocketml.device._queue import TelemetryQueue
from pocketml.device._sketcher import Sketcher
from pocketml.protocol import MonitorPolicy
from pocketml.sketch import ReferenceProfile, build_input_profile

RESULTS = Path(__file__).resolve().parent / "results"
GOAL_BYTES = 64.0
DAY0 = 1_795_200_000 - 1_795_200_000 % 86_400
HOUR = 3600


def _profiles() -> dict[str, tuple[ReferenceProfile, str, Any]]:
    rng = np.random.default_rng(0)
    table = build_input_profile(
        rng.normal(size=(5000, 16)), "NC", rng.dirichlet(np.ones(10), size=5000)
    )
    images = build_input_profile(
        rng.uniform(0, 255, size=(2000, 3, 16, 16)), "NCHW", rng.dirichlet(np.ones(10), size=2000)
    )
    return {
        "table (16 columns)": (table, "NC", lambda r, n: r.normal(size=(n, 16))),
        "image (3 channels)": (
            images,
            "NCHW",
            lambda r, n: r.uniform(0, 255, size=(n, 3, 16, 16)),
        ),
    }


def _device_day(
    profile: ReferenceProfile,
    layout: str,
    draw: Any,
    inputs: int,
    epsilon: float | None,
    seed: int,
    window_s: int = HOUR,
) -> list[dict[str, Any]]:
    """The profile events of one device-day of ``inputs`` scored inputs."""
    rng = np.random.default_rng(seed)
    events: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        queue = TelemetryQueue(Path(tmp) / "q.db")
        clock = {"now": float(DAY0)}
        sketcher = Sketcher(
            queue, events.append, lambda *a: None, rng=rng, wall=lambda: clock["now"]
        )
        policy = MonitorPolicy(window_s=window_s, epsilon_per_day=epsilon)
        tracker = sketcher.tracker("m", 1, profile, layout, policy)
        assert tracker is not None
        stamps = np.sort(rng.uniform(DAY0, DAY0 + 86_400, size=inputs))
        x = draw(rng, inputs)
        classes = rng.integers(0, profile.num_classes, size=inputs)
        confidence = rng.uniform(0.2, 1.0, size=inputs)
        for row, cls, conf, ts in zip(x, classes, confidence, stamps, strict=True):
            tracker.add(row, int(cls), float(conf), float(ts))
        clock["now"] = DAY0 + 86_400 + 1
        sketcher.close_windows(early=False)
        queue.close()
    return events


def _bytes(events: list[dict[str, Any]]) -> tuple[int, int]:
    sketch = sum(len(e["sketch"]) for e in events)
    whole = sum(len(json.dumps(e, separators=(",", ":"))) for e in events)
    return sketch, whole


def _cost_us(profile: ReferenceProfile, layout: str, draw: Any, rounds: int) -> float:
    rng = np.random.default_rng(1)
    x = draw(rng, 2000)
    per_round = []
    with tempfile.TemporaryDirectory() as tmp:
        queue = TelemetryQueue(Path(tmp) / "q.db")
        sketcher = Sketcher(queue, lambda e: None, lambda *a: None, wall=lambda: float(DAY0))
        tracker = sketcher.tracker("m", 1, profile, layout, MonitorPolicy(max_rows=10**9))
        assert tracker is not None
        for _ in range(rounds):
            started = time.perf_counter()
            for row in x:
                tracker.add(row, 3, 0.7, DAY0 + 1.0)
            per_round.append((time.perf_counter() - started) / len(x) * 1e6)
        queue.close()
    return statistics.median(per_round)


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20, help="device-days per cell")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    console = Console()
    rows = []
    for name, (profile, layout, draw) in _profiles().items():
        blocks = len(profile.layout.names)
        cells = [(i, e, HOUR) for i in (10, 100, 1000) for e in (None, 1.0)]
        cells += [(i, None, 86_400) for i in (10, 100, 1000)]  # one event a day, for scale
        for inputs, epsilon, window_s in cells:
            sketch_b, event_b, sent = [], [], []
            for device in range(args.devices):
                events = _device_day(profile, layout, draw, inputs, epsilon, device, window_s)
                s, w = _bytes(events)
                sketch_b.append(s / blocks)
                event_b.append(w / blocks)
                sent.append(len(events))
            rows.append(
                {
                    "profile": name,
                    "blocks": blocks,
                    "bins": profile.layout.total,
                    "inputs_per_day": inputs,
                    "epsilon_per_day": epsilon,
                    "window_s": window_s,
                    "events_per_day": statistics.mean(sent),
                    "sketch_bytes_per_feature_day": statistics.mean(sketch_b),
                    "event_bytes_per_feature_day": statistics.mean(event_b),
                    "meets_goal": (
                        statistics.mean(event_b) <= GOAL_BYTES if window_s == HOUR else None
                    ),
                }
            )
    table_profile, table_layout, table_draw = _profiles()["table (16 columns)"]
    image_profile, image_layout, image_draw = _profiles()["image (3 channels)"]
    cost = {
        "table_us_per_input": _cost_us(table_profile, table_layout, table_draw, args.rounds),
        "image_us_per_input": _cost_us(image_profile, image_layout, image_draw, args.rounds),
    }
    table = Table(
        title="Bytes per monitored block per device-day (profile: blocks/bins; goal at 1 h)"
    )
    for column in (
        "profile",
        "window",
        "inputs/day",
        "DP ε/day",
        "events/day",
        "sketch B",
        "event B",
        f"≤{GOAL_BYTES:g}",
    ):
        table.add_column(column)
    for row in rows:
        table.add_row(
            f"{row['profile'].split(' (')[0]} {row['blocks']}/{row['bins']}",
            "1 h" if row["window_s"] == HOUR else "1 day",
            str(row["inputs_per_day"]),
            "off" if row["epsilon_per_day"] is None else f"{row['epsilon_per_day']:g}",
            f"{row['events_per_day']:.1f}",
            f"{row['sketch_bytes_per_feature_day']:.1f}",
            f"{row['event_bytes_per_feature_day']:.1f}",
            {True: "yes", False: "no", None: "-"}[row["meets_goal"]],
        )
    console.print(table)
    console.print(
        f"SketchTracker.add: {cost['table_us_per_input']:.1f} µs per input (table), "
        f"{cost['image_us_per_input']:.1f} µs (image 3x16x16, features computed on the "
        f"device); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    result = {
        "benchmark": "sketch_bytes",
        "devices_per_cell": args.devices,
        "rows": rows,
        **cost,
        "goal_bytes": GOAL_BYTES,
        "load_average_1m": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sketch_bytes.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
