"""Drift detection from sketches (pocketml.monitor) side by side with Evidently's defaults.

Same windows of raw rows for both. A 10,000-row reference of five columns: x0, x1
(standard normal, correlation 0.8), x2 (standard normal), x3 (exponential), c0
(categorical, 5 values). Cells: null; mean shift of x2 by 0.1-1 sigma; scale x1.5/x2;
mixtures of 10/30 % rows from N(2, 1); two prior shifts of c0; x0-x1 correlation
0.8 -> 0 (marginals unchanged). Window sizes 50, 200, 1000, 5000.

An alarm is a window where any column is flagged (pocketml: ``detect_drift(...).drifted``,
features and PCA projections under Benjamini-Hochberg at 1 %; Evidently: any column
drifted under the per-column method its DataDriftPreset picks: with a reference over
1,000 rows, normed Wasserstein >= 0.1 for numeric and Jensen-Shannon >= 0.1 for
categorical columns). Evidently's dataset-level flag (>= 50 % of columns) would need three
of five columns to move and is not used.

pocketml's decisions are computed from 10 device sketches per window, merged, and
compared with (a) binning the window in one go (must be identical: merging is exact)
and (b) the same questions asked of the raw rows with classical tests at the same level
(two-sample KS per numeric column, chi-squared per categorical one, BH over the columns).

Matched false alarms (n = 50 and 200, where Evidently's fixed 0.1 cut-offs flag most null
windows): Evidently's per-column scores (normed Wasserstein, JS distance; both cut at 0.1 by
default) give a window score, the largest over the columns; its cut-off is raised until the
share of null windows above it equals pocketml's false-alarm rate on the same null windows
(and, separately, 1 %), and detection per cell is counted at that cut-off. These sizes get
``--matched-null-reps`` null windows so the 1 % quantile rests on more than a handful.

The fidelity of the same test from sketches and from raw rows is ``drift_fidelity.py``.

Speed: merge + test of 100 features x 10,000 device sketches vs Evidently's preset on
the equivalent raw rows (100 columns x 240,000 rows, 24 rows per device-day).

Evidently 0.7 is installed in its own venv under ``--work-dir`` (never a pocketml
dependency); the first run takes a minute for that.

Run: ``.venv/bin/python benchmarks/drift_vs_evidently.py [--null-reps 250] [--reps 50]
[--matched-null-reps 1000]`` (timings in docs/benchmarks.md)
Writes ``benchmarks/results/drift_vs_evidently.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pocketml.monitor import (
    ReferenceProfile,
    Sketch,
    benjamini_hochberg,
    build_profile,
    detect_drift,
    merge_sketches,
)

RESULTS = Path(__file__).parent / "results"
WORKER = Path(__file__).parent / "_evidently_worker.py"
EVIDENTLY = ["evidently>=0.7,<0.8", "pandas<3"]  # evidently 0.7 imports a pandas 2 private
SIZES = (50, 200, 1000, 5000)
MATCHED_SIZES = (50, 200)
NUMERIC = ("x0", "x1", "x2", "x3")
N_REFERENCE = 10_000
DEVICES_PER_WINDOW = 10  # each window arrives as 10 device sketches
PRIOR = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
CELLS: dict[str, dict[str, Any]] = {
    "null": {},
    "mean +0.1σ": {"mean": 0.1},
    "mean +0.25σ": {"mean": 0.25},
    "mean +0.5σ": {"mean": 0.5},
    "mean +1σ": {"mean": 1.0},
    "scale ×1.5": {"scale": 1.5},
    "scale ×2": {"scale": 2.0},
    "mixture 10%": {"mixture": 0.1},
    "mixture 30%": {"mixture": 0.3},
    "prior c0 small": {"prior": [0.35, 0.25, 0.15, 0.13, 0.12]},
    "prior c0 large": {"prior": [0.25, 0.25, 0.15, 0.15, 0.20]},
    "corr 0.8→0": {"rho": 0.0},
}


def rows(n: int, rng: np.random.Generator, shift: dict[str, Any]) -> dict[str, np.ndarray]:
    """n rows of the reference world, changed by ``shift``."""
    rho = shift.get("rho", 0.8)
    z = rng.standard_normal((n, 2))
    x2 = rng.standard_normal(n) * shift.get("scale", 1.0) + shift.get("mean", 0.0)
    mixed = rng.random(n) < shift.get("mixture", 0.0)
    x2[mixed] = rng.normal(2.0, 1.0, mixed.sum())
    prior = np.asarray(shift.get("prior", PRIOR))
    return {
        "x0": z[:, 0],
        "x1": rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1],
        "x2": x2,
        "x3": rng.exponential(size=n),
        "c0": rng.choice(np.array(list("abcde")), size=n, p=prior / prior.sum()),
    }


def sketch_by_devices(profile: ReferenceProfile, window: dict[str, np.ndarray]) -> Sketch:
    n = len(window["x0"])
    step = max(5, n // DEVICES_PER_WINDOW)
    parts = [
        profile.sketch({k: v[i : i + step] for k, v in window.items()}) for i in range(0, n, step)
    ]
    return merge_sketches(parts)


def raw_decision(reference: dict[str, np.ndarray], window: dict[str, np.ndarray]) -> bool:
    """Classical raw-row tests at the same level: KS / chi-squared, BH over columns."""
    p_values = []
    for name, values in window.items():
        if name == "c0":
            levels = list("abcde")
            table = [
                [int((reference[name] == v).sum()) for v in levels],
                [int((values == v).sum()) for v in levels],
            ]
            p_values.append(float(stats.chi2_contingency(table)[1]))
        else:
            p_values.append(float(stats.ks_2samp(reference[name], values).pvalue))
    return any(benjamini_hochberg(p_values, 0.01))


def matched(cells: dict[str, dict[str, Any]], window_scores: dict[str, list[float]]) -> Any:
    """Evidently at pocketml's false-alarm rate (and at 1 %) for the small window sizes."""
    out: dict[str, Any] = {}
    for size in MATCHED_SIZES:
        null = np.sort(window_scores[f"null|{size}"])[::-1]
        rates = {"pocketml_rate": cells[f"null|{size}"]["pocketml"], "1%": 0.01}
        for label, rate in rates.items():
            allowed = int(np.floor(rate * null.size))  # null windows allowed above the cut
            cutoff = float(null[min(allowed, null.size - 1)])
            out[f"{size}|{label}"] = {
                "cutoff": cutoff,
                "target_rate": rate,
                "null_rate": float(np.mean(null > cutoff)),
                "detection": {
                    cell: float(np.mean(np.asarray(window_scores[f"{cell}|{size}"]) > cutoff))
                    for cell in CELLS
                    if cell != "null"
                },
            }
    return out


def ensure_evidently(work: Path) -> Path:
    python = work / "venv" / "bin" / "python"
    if not python.exists():
        print(f"installing Evidently into {work / 'venv'} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *EVIDENTLY], check=True)
    return python


def run_grid(args: argparse.Namespace, python: Path, work: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    reference = rows(N_REFERENCE, rng, {})
    profile = build_profile(reference, categorical=["c0"])
    arrays: dict[str, np.ndarray] = {f"ref_{k}": v for k, v in reference.items()}
    mine: dict[str, list[bool]] = {}
    agree_merge = agree_raw = total = 0
    seconds = 0.0
    for cell, shift in CELLS.items():
        for size in SIZES:
            reps = args.null_reps if cell == "null" else args.reps
            if cell == "null" and size in MATCHED_SIZES:
                reps = max(reps, args.matched_null_reps)
            key = f"{cell}|{size}"
            flags = []
            for rep in range(reps):
                window = rows(size, rng, shift)
                for name, values in window.items():
                    arrays[f"{key}#{rep}/{name}"] = values
                t0 = time.perf_counter()
                merged = sketch_by_devices(profile, window)
                decision = detect_drift(profile, merged).drifted
                seconds += time.perf_counter() - t0
                agree_merge += merged == profile.sketch(window)
                agree_raw += decision == raw_decision(reference, window)
                total += 1
                flags.append(decision)
            mine[key] = flags
    source, target = work / "windows.npz", work / "evidently.json"
    np.savez(source, **arrays)
    print(f"Evidently on {total} windows ...", flush=True)
    subprocess.run(
        [str(python), str(WORKER), str(source), str(target), str(args.preset)], check=True
    )
    theirs = json.loads(target.read_text())
    grouped: dict[str, list[bool]] = {}
    window_scores: dict[str, list[float]] = {}
    for window_key, column_flags in theirs["flags"].items():
        grouped.setdefault(window_key.split("#")[0], []).append(any(column_flags))
        # Both default cut-offs are 0.1, so the largest column score is the window's score.
        window_scores.setdefault(window_key.split("#")[0], []).append(
            max(theirs["scores"][window_key])
        )
    cells = {
        key: {
            "pocketml": float(np.mean(flags)),
            "evidently": float(np.mean(grouped[key])),
            "reps": len(flags),
        }
        for key, flags in mine.items()
    }
    return {
        "cells": cells,
        "windows": total,
        "merge_equals_one_shot": agree_merge / total,
        "sketch_vs_raw_tests_agreement": agree_raw / total,
        "matched": matched(cells, window_scores),
        "pocketml_seconds": seconds,
        "evidently_seconds": theirs["seconds"],
        "evidently_methods": theirs["methods"],
        "preset_agreement": [theirs["preset_agree"], theirs["preset_total"]],
    }


def run_speed(python: Path, work: Path, devices: int, features: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    per_device = 24
    reference = {f"f{i}": rng.standard_normal(N_REFERENCE) for i in range(features)}
    profile = build_profile(reference)
    current = {f"f{i}": rng.standard_normal(devices * per_device) for i in range(features)}
    # Device sketches, built in bulk (what 10,000 devices would send), then parsed objects.
    one = profile.sketch(current)  # also checks the layout
    parts = []
    offsets = profile.layout.offsets
    device = np.repeat(np.arange(devices), per_device)
    blocks = []
    for index, name in enumerate(profile.layout.names):
        bins = profile.bins_of(name)
        assert bins is not None
        values = (
            current[name]
            if not name.startswith("@")
            else profile.projection.apply(current)[  # type: ignore[union-attr]
                :, profile.projection_names.index(name)
            ]
        )
        counts = np.zeros((devices, offsets[index + 1] - offsets[index]), dtype=np.int64)
        np.add.at(counts, (device, bins.assign(values)), 1)
        blocks.append(counts)
    matrix = np.hstack(blocks)
    parts = [Sketch(profile.layout, per_device, row) for row in matrix]
    t0 = time.perf_counter()
    merged = merge_sketches(parts)
    t1 = time.perf_counter()
    result = detect_drift(profile, merged)
    t2 = time.perf_counter()
    assert merged == one
    source, target = work / "speed.npz", work / "speed.json"
    np.savez(
        source,
        **{f"ref_{k}": v for k, v in reference.items()},
        **{f"cur_{k}": v for k, v in current.items()},
    )
    script = (
        "import sys,time,json,numpy as np,pandas as pd\n"
        "from evidently import Report,Dataset,DataDefinition\n"
        "from evidently.presets import DataDriftPreset\n"
        "d=np.load(sys.argv[1]);cols=[k[4:] for k in d.files if k.startswith('ref_')]\n"
        "r=pd.DataFrame({c:d['ref_'+c] for c in cols})\n"
        "c=pd.DataFrame({k:d['cur_'+k] for k in cols})\n"
        "dd=DataDefinition(numerical_columns=cols);t=time.perf_counter()\n"
        "Report([DataDriftPreset()]).run(Dataset.from_pandas(c,data_definition=dd),"
        "Dataset.from_pandas(r,data_definition=dd))\n"
        "json.dump({'seconds':time.perf_counter()-t},open(sys.argv[2],'w'))\n"
    )
    subprocess.run([str(python), "-c", script, str(source), str(target)], check=True)
    return {
        "devices": devices,
        "features": features,
        "rows": devices * per_device,
        "merge_s": t1 - t0,
        "test_s": t2 - t1,
        "drifted": result.drifted,
        "evidently_s": json.loads(target.read_text())["seconds"],
    }


def print_table(grid: dict[str, Any], speed: dict[str, Any]) -> None:
    head = "cell".ljust(16) + "".join(f"{'n=' + str(s):>16}" for s in SIZES)
    print("\nalarm rate per window, pocketml / Evidently (null row = false alarms)")
    print(head)
    print(" " * 16 + "      pml / evid" * len(SIZES))
    for cell in CELLS:
        line = cell.ljust(16)
        for size in SIZES:
            c = grid["cells"][f"{cell}|{size}"]
            line += f"{c['pocketml'] * 100:>9.1f} /{c['evidently'] * 100:>5.1f}"
        print(line)
    reps = grid["cells"][f"null|{SIZES[0]}"]["reps"], grid["cells"][f"mean +1σ|{SIZES[0]}"]["reps"]
    print(f"windows: {grid['windows']} ({reps[0]} per null cell, {reps[1]} per shifted cell)")
    print(f"merged device sketches == one-shot binning: {grid['merge_equals_one_shot']:.1%}")
    print(
        f"sketch decision == raw-row KS/chi2 decision: {grid['sketch_vs_raw_tests_agreement']:.1%}"
    )
    print("\nmatched false alarms: detection %, pocketml vs Evidently at pocketml's null rate")
    print("(and at 1 %), Evidently's cut-off on its largest column score")
    for size in MATCHED_SIZES:
        own = grid["matched"][f"{size}|pocketml_rate"]
        one = grid["matched"][f"{size}|1%"]
        print(
            f"n={size}: null rate pml {grid['cells'][f'null|{size}']['pocketml']:.2%}, "
            f"Evidently at cut-off {own['cutoff']:.3f}: {own['null_rate']:.2%}; "
            f"at 1 %: cut-off {one['cutoff']:.3f} ({one['null_rate']:.2%})"
        )
        for cell, rate in own["detection"].items():
            pml = grid["cells"][f"{cell}|{size}"]["pocketml"]
            at_one = one["detection"][cell]
            print(f"  {cell:<16}{pml * 100:>7.1f} /{rate * 100:>6.1f} /{at_one * 100:>6.1f}")
    print(f"Evidently methods: {grid['evidently_methods']}")
    agree, total = grid["preset_agreement"]
    print(f"DataDriftPreset == direct Evidently calls on {total} column tests: {agree}/{total}")
    print(
        f"speed, {speed['features']} features x {speed['devices']} device sketches: merge "
        f"{speed['merge_s']:.3f} s + test {speed['test_s']:.3f} s; Evidently preset on "
        f"{speed['rows']} raw rows: {speed['evidently_s']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-reps", type=int, default=250)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--matched-null-reps", type=int, default=1000)
    parser.add_argument("--preset", type=int, default=20, help="windows re-run with the preset")
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pocketml-bench" / "drift_vs_evidently",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_vs_evidently.json")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    python = ensure_evidently(args.work_dir)
    started = time.perf_counter()
    grid = run_grid(args, python, args.work_dir)
    speed = run_speed(python, args.work_dir, args.devices, args.features)
    print_table(grid, speed)
    print(f"total {time.perf_counter() - started:.0f} s")
    args.out.write_text(json.dumps({"grid": grid, "speed": speed}, indent=1))


if __name__ == "__main__":
    main()
