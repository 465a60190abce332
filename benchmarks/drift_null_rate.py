"""pocketml's false-alarm rate on many null windows, per block and per window.

The grid of ``drift_vs_evidently.py`` has 250-1,000 null windows per size, too few to tell
1.0 % from 1.5 %. Here: ``--draws`` null windows of 200 and 1,000 rows against the references
of ``drift_vs_evidently.py`` (seed 0) and ``drift_delay.py`` (seed 2), each block's own
rejection rate at alpha = 1 % before the correction, and the window's (any block after
Benjamini-Hochberg). No Evidently.

Run: ``.venv/bin/python benchmarks/drift_null_rate.py``
-> ``benchmarks/results/drift_null_rate.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift_vs_evidently import RESULTS, rows

from pocketml.monitor import build_profile, detect_drift, detector_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=RESULTS / "drift_null_rate.json")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {"draws": args.draws, "runs": {}}
    for seed in (0, 2):
        rng = np.random.default_rng(seed)
        profile = build_profile(rows(10_000, rng, {}), categorical=["c0"])
        family = [*profile.feature_names, *profile.projection_names]
        detectors = {block: detector_for(profile, block) for block in family}
        for size in (200, 1000):
            blocks = dict.fromkeys(family, 0)
            windows = 0
            for _ in range(args.draws):
                sketch = profile.sketch(rows(size, rng, {}))
                for block in family:
                    reference = profile.reference.block(block)
                    blocks[block] += detectors[block].test(reference, sketch.block(block)).drifted
                windows += detect_drift(profile, sketch).drifted
            run = {
                "window_rate": windows / args.draws,
                "block_rates": {b: v / args.draws for b, v in blocks.items()},
            }
            results["runs"][f"seed {seed}|{size}"] = run
            per_block = ", ".join(f"{b} {v:.2%}" for b, v in run["block_rates"].items())
            print(f"reference seed {seed}, {size} rows: window {run['window_rate']:.2%}")
            print(f"  per block (uncorrected, alpha 1 %): {per_block}", flush=True)
    results["seconds"] = time.perf_counter() - started
    print(f"total {results['seconds']:.0f} s")
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
