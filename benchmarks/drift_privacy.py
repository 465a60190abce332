"""The price of privacy: detection delay with local DP at epsilon = 1 per device-day.

A fleet of ``N`` devices (1,000, 3,000, 10,000) each scores ``--rows`` inputs a day in the world
of ``drift_vs_evidently.py`` (x0..x3, c0; 4 PCA projections: 9 blocks) and sends one sketch a
day. With DP, that sketch goes through ``pocketml.sketch.privatize`` at epsilon = 1 (the whole
day's budget in one window): two-sided geometric noise on every count, sensitivity
``blocks + 1 = 10`` (one scored input moves one bin per block and ``n``), so each device adds
noise of variance ``2a / (1 - a)^2`` (a = exp(-1/10): 200) to every bin of the merged day.
The server merges the fleet's day and tests a trailing window of ``W`` days (1 or 7) against
the reference with ``detect_drift(..., noise_variance=W * N * 200)``; without DP, the same
windows exact.

The noise of ``N`` devices is drawn in closed form (the sum of ``N`` two-sided geometrics is
the difference of two negative binomials with ``N`` successes) rather than by calling
``privatize`` ``N`` times a day; the run first checks that form against ``privatize`` itself
(the per-bin variance of 2,000 privatized device sketches' noise, summed).

Per (devices, W, DP) and shift: the per-day false-alarm rate before the change (days whose
window is all pre-change) and the delay in days from the change to the first alarm (0 = the
first shifted day), median and p90 over repetitions; a stream without an alarm counts as
``--after`` (censored, shown as "never").

Run: ``.venv/bin/python benchmarks/drift_privacy.py [--reps 12]`` -> the table, and
``benchmarks/results/drift_privacy.json`` and ``docs/drift_privacy.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift_vs_evidently import RESULTS, rows

from pocketml.monitor import Sketch, build_profile, detect_drift, merge_sketches
from pocketml.sketch._privacy import geometric_variance, privatize, sensitivity_of

EPSILON = 1.0
FLEETS = (1_000, 3_000, 10_000)
WINDOWS = (1, 7)
SHIFTS: dict[str, dict[str, Any]] = {
    "mean +0.25σ": {"mean": 0.25},
    "mean +1σ": {"mean": 1.0},
    "scale ×2": {"scale": 2.0},
}
PNG = Path(__file__).parent.parent / "docs" / "drift_privacy.png"


def fleet_noise(rng: np.random.Generator, devices: int, size: int, epsilon: float, sens: int):  # type: ignore[no-untyped-def]
    """The summed two-sided geometric noise of ``devices`` device sketches, per count."""
    success = 1 - np.exp(-epsilon / sens)
    return rng.negative_binomial(devices, success, size) - rng.negative_binomial(
        devices, success, size
    )


def check_closed_form(profile: Any, rng: np.random.Generator) -> dict[str, float]:
    """privatize's own noise, summed over 2,000 device sketches, vs the closed form."""
    devices = 2000
    exact = profile.sketch(rows(5, rng, {}))
    noise = np.zeros(exact.counts.size)
    for _ in range(devices):
        noisy, variance = privatize(exact, EPSILON, rng)
        noise += noisy.counts - exact.counts
    closed = fleet_noise(rng, devices, 200_000, EPSILON, sensitivity_of(profile.layout))
    return {
        "device_variance": variance,
        "privatize_summed_variance_per_bin": float(noise.var()),
        "closed_form_variance": float(closed.var()),
        "expected": devices * variance,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--rows", type=int, default=5, help="scored inputs per device-day")
    parser.add_argument("--before", type=int, default=14, help="days before the change")
    parser.add_argument("--after", type=int, default=14, help="days after the change")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_privacy.json")
    parser.add_argument("--png", type=Path, default=PNG)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    profile = build_profile(rows(10_000, rng, {}), categorical=["c0"])
    sens = sensitivity_of(profile.layout)
    device_variance = geometric_variance(EPSILON, sens)
    check = check_closed_form(profile, rng)
    summed = check["privatize_summed_variance_per_bin"]
    print(
        f"sensitivity {sens}, noise variance per count per device {device_variance:.1f}; "
        f"2,000 privatized sketches' summed noise: variance {summed:.0f}"
        f" (expected {check['expected']:.0f}; closed form {check['closed_form_variance']:.0f})",
        flush=True,
    )
    days = args.before + args.after
    alarms: dict[str, np.ndarray] = {}
    for devices in FLEETS:
        per_day = devices * args.rows
        for rep in range(args.reps):
            prefix = [profile.sketch(rows(per_day, rng, {})) for _ in range(args.before)]
            for shift, change in SHIFTS.items():
                exact = prefix + [
                    profile.sketch(rows(per_day, rng, change)) for _ in range(args.after)
                ]
                noisy = [
                    Sketch(
                        day.layout,
                        day.n,
                        day.counts + fleet_noise(rng, devices, day.counts.size, EPSILON, sens),
                    )
                    for day in exact
                ]
                for window in WINDOWS:
                    for dp, stream in (("DP", noisy), ("exact", exact)):
                        key = f"{devices}|{window}|{dp}|{shift}"
                        grid = alarms.setdefault(key, np.zeros((args.reps, days), dtype=bool))
                        variance = window * devices * device_variance if dp == "DP" else 0.0
                        for t in range(days):
                            merged = merge_sketches(stream[max(0, t - window + 1) : t + 1])
                            size = min(window, t + 1)
                            grid[rep, t] = detect_drift(
                                profile,
                                merged,
                                noise_variance=variance * size / window,
                            ).drifted
        print(f"{devices} devices done ({time.perf_counter() - started:.0f} s)", flush=True)
    results = summarise(alarms, args)
    results["closed_form_check"] = check
    results["sensitivity"] = sens
    results["device_variance"] = device_variance
    results["seconds"] = time.perf_counter() - started
    print_table(results, args.after)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    plot(results, args.png, args.after)


def summarise(alarms: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for devices in FLEETS:
        for window in WINDOWS:
            for dp in ("DP", "exact"):
                false_alarms = []
                delays: dict[str, Any] = {}
                for index, shift in enumerate(SHIFTS):
                    grid = alarms[f"{devices}|{window}|{dp}|{shift}"]
                    if index == 0:  # the null prefix is shared: count its days once
                        false_alarms.extend(grid[:, window - 1 : args.before].reshape(-1))
                    post = grid[:, args.before :]
                    values = np.array([int(np.argmax(r)) if r.any() else args.after for r in post])
                    delays[shift] = {
                        "median": float(np.median(values)),
                        "p90": float(np.quantile(values, 0.9)),
                        "never": int((values >= args.after).sum()),
                    }
                cells[f"{devices}|{window}|{dp}"] = {
                    "false_alarm_rate": float(np.mean(false_alarms)),
                    "null_days": len(false_alarms),
                    "delay": delays,
                }
    return {"cells": cells, "reps": args.reps, "rows_per_device_day": args.rows}


def print_table(results: dict[str, Any], after: int) -> None:
    print(f"\ndelay in days after the change, median / p90 (>= {after}: never)")
    print(
        "devices".rjust(8)
        + "W".rjust(3)
        + "DP".rjust(7)
        + "FA/day".rjust(8)
        + "".join(f"{s:>16}" for s in SHIFTS)
    )
    for key, cell in results["cells"].items():
        devices, window, dp = key.split("|")
        line = f"{devices:>8}{window:>3}{dp:>7}{cell['false_alarm_rate']:>8.1%}"
        for shift in SHIFTS:
            d = cell["delay"][shift]
            line += f"{d['median']:>10.1f} / {d['p90']:<3.0f}"
        print(line)
    print(f"total {results['seconds']:.0f} s")


def plot(results: dict[str, Any], path: Path, after: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHIFTS), figsize=(5 * len(SHIFTS), 3.6), sharey=True)
    for axis, shift in zip(np.atleast_1d(axes), SHIFTS, strict=True):
        for window in WINDOWS:
            for dp, style in (("DP", "-o"), ("exact", "--s")):
                medians = [
                    results["cells"][f"{d}|{window}|{dp}"]["delay"][shift]["median"] for d in FLEETS
                ]
                label = f"{'ε=1 local DP' if dp == 'DP' else 'no DP'}, {window}-day window"
                axis.plot(FLEETS, medians, style, label=label)
        axis.axhline(after, color="grey", lw=0.8, ls=":")
        axis.set_xscale("log")
        axis.set_xlabel("devices (5 inputs per device-day)")
        axis.set_title(f"shift: {shift}")
    np.atleast_1d(axes)[0].set_ylabel(f"median delay, days ({after} = not detected)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("Price of privacy: drift detection delay at ε = 1 per device-day")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
