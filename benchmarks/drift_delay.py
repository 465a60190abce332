"""Detection delay on a stream with a change point: pocketml vs Evidently's defaults.

The world of ``drift_vs_evidently.py`` (a 10,000-row reference of x0..x3 and c0). Each
repetition is a stream of equal windows (200 or 1,000 rows): ``--before`` null windows,
then the change, then ``--after`` shifted windows, for each shift type (the null prefix is
shared by the shift types of one repetition). Per window, an alarm is:

- pocketml, vs reference: ``detect_drift(profile, window).drifted`` (BH at 1 % over the
  features and PCA projections);
- pocketml, vs previous window: the same, with the previous window's sketch as reference
  (sees a change only at its first window; after that the two sides are alike again);
- Evidently's defaults: any column flagged by the method its DataDriftPreset picks
  (normed Wasserstein / JS distance >= 0.1);
- Evidently at 1 %: the same scores, the cut-off raised until 1 % of the pre-change
  windows exceed it (an oracle calibration pocketml does not need; it shows what the
  fixed 0.1 costs).

Reported per method and window size: the per-window false-alarm rate before the change,
and the delay (windows from the change to the first alarm; 0 = the first shifted window),
median and p90 over repetitions (a stream with no alarm counts as ``after``: censored).

Run: ``.venv/bin/python benchmarks/drift_delay.py [--reps 30]``; needs the Evidently venv of
``drift_vs_evidently.py`` (built on first use). Writes ``benchmarks/results/drift_delay.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift_vs_evidently import RESULTS, WORKER, ensure_evidently, rows

from pocketml.monitor import build_profile, detect_drift

SIZES = (200, 1000)
SHIFTS: dict[str, dict[str, Any]] = {
    "mean +0.1σ": {"mean": 0.1},
    "mean +0.25σ": {"mean": 0.25},
    "scale ×1.5": {"scale": 1.5},
    "mixture 10%": {"mixture": 0.1},
    "prior c0 small": {"prior": [0.35, 0.25, 0.15, 0.13, 0.12]},
    "corr 0.8→0": {"rho": 0.0},
}
METHODS = ("pocketml", "pocketml vs previous", "Evidently default", "Evidently at 1 %")


def delays(alarms: np.ndarray, before: int, after: int) -> list[int]:
    """Windows from the change to the first alarm, per stream (``after`` when none)."""
    post = alarms[:, before:]
    return [int(np.argmax(row)) if row.any() else after for row in post]


def summarise(values: list[int], after: int) -> dict[str, Any]:
    array = np.asarray(values)
    return {
        "median": float(np.median(array)),
        "p90": float(np.quantile(array, 0.9)),
        "never": int((array >= after).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--before", type=int, default=10)
    parser.add_argument("--after", type=int, default=15)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pocketml-bench" / "drift_vs_evidently",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_delay.json")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    python = ensure_evidently(args.work_dir)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    reference = rows(10_000, rng, {})
    profile = build_profile(reference, categorical=["c0"])
    arrays: dict[str, np.ndarray] = {f"ref_{k}": v for k, v in reference.items()}
    # mine[size][shift] -> (reps, windows) alarms, vs reference and vs previous window
    mine: dict[str, np.ndarray] = {}
    streams = args.before + args.after
    for size in SIZES:
        for shift in SHIFTS:
            for kind in ("ref", "prev"):
                mine[f"{size}|{shift}|{kind}"] = np.zeros((args.reps, streams), dtype=bool)
        for rep in range(args.reps):
            prefix = [rows(size, rng, {}) for _ in range(args.before)]
            for shift, change in SHIFTS.items():
                stream = prefix + [rows(size, rng, change) for _ in range(args.after)]
                sketches = [profile.sketch(window) for window in stream]
                for t, window in enumerate(stream):
                    if t >= args.before or shift == next(iter(SHIFTS)):
                        for name, values in window.items():
                            arrays[f"{size}|{shift}|{rep:03d}|{t:02d}/{name}"] = values
                    mine[f"{size}|{shift}|ref"][rep, t] = detect_drift(profile, sketches[t]).drifted
                    if t > 0:
                        mine[f"{size}|{shift}|prev"][rep, t] = detect_drift(
                            profile, sketches[t], reference=sketches[t - 1]
                        ).drifted
    source, target = args.work_dir / "delay.npz", args.work_dir / "delay.json"
    np.savez(source, **arrays)
    print(f"Evidently on {len({k.split('/')[0] for k in arrays if '/' in k})} windows", flush=True)
    subprocess.run([str(python), str(WORKER), str(source), str(target), "0"], check=True)
    theirs = json.loads(target.read_text())
    results: dict[str, Any] = {"sizes": {}, "reps": args.reps, "before": args.before}
    first = next(iter(SHIFTS))
    for size in SIZES:

        def evidently(shift: str, rep: int, t: int, size: int = size) -> tuple[bool, float]:
            owner = first if t < args.before else shift
            key = f"{size}|{owner}|{rep:03d}|{t:02d}"
            return any(theirs["flags"][key]), max(theirs["scores"][key])

        null_scores = np.sort(
            [evidently(first, r, t)[1] for r in range(args.reps) for t in range(args.before)]
        )[::-1]
        cutoff = float(null_scores[int(np.floor(0.01 * null_scores.size))])
        out: dict[str, Any] = {"evidently_cutoff_at_1pct": cutoff, "methods": {}}
        for method in METHODS:
            per_shift: dict[str, Any] = {}
            false_alarms: list[bool] = []
            for shift in SHIFTS:
                if method.startswith("pocketml"):
                    kind = "ref" if method == "pocketml" else "prev"
                    alarms = mine[f"{size}|{shift}|{kind}"]
                else:
                    alarms = np.array(
                        [
                            [
                                evidently(shift, r, t)[0]
                                if method == "Evidently default"
                                else evidently(shift, r, t)[1] > cutoff
                                for t in range(streams)
                            ]
                            for r in range(args.reps)
                        ]
                    )
                if shift == first:  # the prefix is shared: count its windows once
                    start = 1 if method == "pocketml vs previous" else 0
                    false_alarms.extend(alarms[:, start : args.before].reshape(-1).tolist())
                per_shift[shift] = summarise(delays(alarms, args.before, args.after), args.after)
            out["methods"][method] = {
                "false_alarm_rate": float(np.mean(false_alarms)),
                "null_windows": len(false_alarms),
                "delay": per_shift,
            }
        results["sizes"][str(size)] = out
    results["seconds"] = time.perf_counter() - started
    print_table(results, args.after)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))


def print_table(results: dict[str, Any], after: int) -> None:
    for size, out in results["sizes"].items():
        print(f"\nwindows of {size} rows (delay in windows: median / p90; >= {after} = never)")
        head = "method".ljust(22) + "FA/window".rjust(10)
        print(head + "".join(f"{s[:14]:>16}" for s in SHIFTS))
        for method, value in out["methods"].items():
            line = method.ljust(22) + f"{value['false_alarm_rate']:>10.1%}"
            for shift in SHIFTS:
                d = value["delay"][shift]
                line += f"{d['median']:>9.0f} / {d['p90']:<4.0f}"
            print(line)
        cutoff = out["evidently_cutoff_at_1pct"]
        print(f"Evidently's cut-off at 1 % of pre-change windows: {cutoff:.3f}")
    print(f"total {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
