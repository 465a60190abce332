"""Fidelity of the sketches: the same test from the sketch and from the raw rows.

The issue's goal: "the same test computed from the merged sketches and from the raw rows
agrees on >= 98 % of decisions". Chi-squared on the profile's own bins is identical by
construction and does not count. What does count, per numeric column and window of the
grid of ``drift_vs_evidently.py`` (same world, cells and sizes), with the *same* reference
rows on both sides (the profile's reference half, 5,000 rows):

- ``ks``: two-sample Kolmogorov-Smirnov at 1 %: the statistic from the raw rows (scipy) vs
  from the sketch (the largest CDF gap at the bin edges, all the sketch can see), both with
  scipy's asymptotic p-value for the same sizes;
- ``wasserstein>=0.1``: Evidently's own numeric decision, normed Wasserstein >= 0.1: from the
  raw rows (``scipy.stats.wasserstein_distance / std``) vs from the sketch (each bin's mass
  at its point, ``binned_wasserstein``).

Both at the profile's default 20 inner bins and at 32 (the most ``build_profile`` allows);
the sketch is the merge of 10 device sketches (merging is exact). Reported: agreement over
all decisions, per window size, and the cells where it is lowest.

Run: ``.venv/bin/python benchmarks/drift_fidelity.py``
-> ``benchmarks/results/drift_fidelity.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift_vs_evidently import CELLS, NUMERIC, RESULTS, SIZES, rows, sketch_by_devices
from scipy import stats

from pocketml.monitor import build_profile
from pocketml.monitor._wasserstein import binned_wasserstein

BINS = (20, 32)


def ks_binned_p(reference: np.ndarray, current: np.ndarray) -> float:
    """KS p-value (scipy's asymptotic one) of the largest CDF gap at the bin edges."""
    n_ref, n = int(reference.sum()), int(current.sum())
    gap = np.abs(np.cumsum(current) / n - np.cumsum(reference) / n_ref).max()
    return float(stats.kstwo.sf(gap, round(n * n_ref / (n + n_ref))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-reps", type=int, default=250)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_fidelity.json")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    reference = rows(10_000, rng, {})
    profiles = {k: build_profile(reference, categorical=["c0"], bins=k) for k in BINS}
    # The profile's reference counts come from the odd rows: the raw side uses the same ones.
    raw_reference = {c: reference[c][1::2] for c in NUMERIC}
    std = {c: float(np.std(raw_reference[c])) for c in NUMERIC}
    tally: dict[str, dict[str, list[int]]] = {}  # test@bins -> cell|size -> [agree, total]
    for cell, shift in CELLS.items():
        for size in SIZES:
            for _ in range(args.null_reps if cell == "null" else args.reps):
                window = rows(size, rng, shift)
                sketches = {k: sketch_by_devices(p, window) for k, p in profiles.items()}
                for column in NUMERIC:
                    ref, cur = raw_reference[column], window[column]
                    raw = {
                        "ks": stats.ks_2samp(ref, cur, method="asymp").pvalue < 0.01,
                        "wasserstein>=0.1": stats.wasserstein_distance(ref, cur) / std[column]
                        >= 0.1,
                    }
                    for k, profile in profiles.items():
                        ref_counts = profile.reference.block(column)
                        counts = sketches[k].block(column)
                        points = profile.bins_of(column).points()  # type: ignore[union-attr]
                        sketch = {
                            "ks": ks_binned_p(ref_counts, counts) < 0.01,
                            "wasserstein>=0.1": binned_wasserstein(ref_counts, counts, points)
                            / std[column]
                            >= 0.1,
                        }
                        for test in raw:
                            entry = tally.setdefault(f"{test}@{k}", {}).setdefault(
                                f"{cell}|{size}", [0, 0]
                            )
                            entry[0] += int(raw[test] == sketch[test])
                            entry[1] += 1
    results: dict[str, Any] = {}
    for key, cells in tally.items():
        agree = sum(a for a, _ in cells.values())
        total = sum(n for _, n in cells.values())
        worst = sorted(cells.items(), key=lambda kv: kv[1][0] / kv[1][1])[:4]
        results[key] = {
            "agreement": agree / total,
            "decisions": total,
            "per_size": {
                str(size): sum(v[0] for c, v in cells.items() if c.endswith(f"|{size}"))
                / sum(v[1] for c, v in cells.items() if c.endswith(f"|{size}"))
                for size in SIZES
            },
            "worst_cells": {c: v[0] / v[1] for c, v in worst},
        }
        worst_text = ", ".join(f"{c} {v[0] / v[1]:.0%}" for c, v in worst)
        per_size = ", ".join(f"n={s}: {v:.1%}" for s, v in results[key]["per_size"].items())
        print(f"{key:<20} raw == sketch on {agree / total:.2%} of {total} decisions ({per_size})")
        print(f"{'':<20} lowest: {worst_text}")
    results["seconds"] = time.perf_counter() - started
    print(f"total {results['seconds']:.0f} s")
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
