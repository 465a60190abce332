"""Robust aggregation against 20 % attackers on non-IID digits, over many seeds, in one run.

    PYTHONPATH=src python benchmarks/fl_robustness.py [--seeds 20] [--rounds 40] [--json FILE]

The task of fl_accuracy.py (digits, pixels / 16 as the frozen embeddings, 1,400 training
images over 50 clients holding two classes each, 20 clients per round, 2 local epochs,
397 test images). 10 of the 50 clients (20 %) attack in every round they are sampled:

- "scaled x10": they train honestly and multiply their update by 10;
- "flipped": they train on flipped labels (k -> 9 - k) and send the update as is;
- "flipped x10": both (the attack of fl_accuracy.py).

Every attack meets FedAvg, FedAvg with a fixed clip of 1, the trimmed mean (β = 0.2), the
coordinate median, centered clipping (radius = the median distance, 3 iterations) and
FLTrust (a class-balanced root set of 100 or 300 training samples the server trains on,
and 100 drawn at random to show why balance matters; updates rescaled to the cohort's
median norm), and a bound: the attackers never report (what a perfect defence
achieves). The honest run (no attacker) is run with every aggregator too. Each seed draws
the split, the attackers, the cohorts and the root set; a row's numbers are the accuracy
after the last round over the seeds (mean, standard error, min-max) and its difference to
honest FedAvg on the same seeds (paired, in points).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pocketml.data import load_digits
from pocketml.federated import SimulationConfig, simulate
from pocketml.fl import LocalRecipe

ATTACKS: dict[str, dict[str, Any]] = {
    "honest": {},
    "scaled x10": {"malicious_fraction": 0.2, "malicious_flip": False, "malicious_scale": 10.0},
    "flipped": {"malicious_fraction": 0.2, "malicious_flip": True, "malicious_scale": 1.0},
    "flipped x10": {"malicious_fraction": 0.2, "malicious_flip": True, "malicious_scale": 10.0},
}
DEFENCES: dict[str, dict[str, Any]] = {
    "fedavg": {"aggregator": "fedavg"},
    "fedavg clip 1": {"aggregator": "fedavg", "clip_norm": 1.0},
    "trimmed mean β=0.2": {"aggregator": "trimmed_mean", "trim_fraction": 0.2},
    "median": {"aggregator": "median"},
    "centered clipping": {"aggregator": "centered_clipping"},
    "fltrust (root 100)": {"aggregator": "fltrust", "root_samples": 100},
    "fltrust (root 100, unbalanced)": {
        "aggregator": "fltrust",
        "root_samples": 100,
        "root_balanced": False,
    },
    "fltrust (root 300)": {"aggregator": "fltrust", "root_samples": 300},
    "attackers absent (bound)": {"aggregator": "fedavg", "malicious_absent": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with threadpool_limits(1):
        report = _run(args.seeds, args.rounds)
    _print(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _run(n_seeds: int, rounds: int) -> dict[str, Any]:
    data = load_digits()
    x = data.features.reshape(len(data.labels), -1) / 16.0
    order = np.random.default_rng(0).permutation(len(data.labels))
    tr, te = order[:1400], order[1400:]
    base: dict[str, Any] = {
        "n_clients": 50,
        "clients_per_round": 20,
        "rounds": rounds,
        "recipe": LocalRecipe(epochs=2, batch_size=16, learning_rate=0.1),
    }
    seeds = list(range(n_seeds))
    runs: dict[str, dict[str, Any]] = {}
    for attack, hostile in ATTACKS.items():
        for defence, aggregation in DEFENCES.items():
            if attack == "honest" and aggregation.get("malicious_absent"):
                continue  # no attacker to leave out
            start = time.perf_counter()
            accuracy = [
                simulate(
                    x[tr],
                    data.labels[tr],
                    x[te],
                    data.labels[te],
                    SimulationConfig(**base, **hostile, **aggregation, seed=seed),
                ).accuracy[-1]
                for seed in seeds
            ]
            runs[f"{attack} | {defence}"] = {
                "attack": attack,
                "defence": defence,
                "accuracy": accuracy,
                "seconds": time.perf_counter() - start,
            }
    honest = np.array(runs["honest | fedavg"]["accuracy"])
    for row in runs.values():
        acc = np.array(row["accuracy"])
        diff = 100 * (acc - honest)
        row["mean"] = float(acc.mean())
        row["stderr"] = float(acc.std(ddof=1) / np.sqrt(acc.size)) if acc.size > 1 else 0.0
        row["min"], row["max"] = float(acc.min()), float(acc.max())
        row["points_vs_honest_fedavg"] = float(diff.mean())
        row["points_stderr"] = (
            float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else 0.0
        )
    return {"rounds": rounds, "seeds": seeds, "runs": runs}


def _print(report: dict[str, Any]) -> None:
    print(
        f"non-IID digits, 50 clients x 2 classes, 20 per round, {report['rounds']} rounds, "
        f"{len(report['seeds'])} seeds; Δ = points vs honest FedAvg (paired)"
    )
    print(f"  {'attack':<12} {'defence':<30} {'mean':>6} {'±se':>6} {'min-max':>12} {'Δ':>13}")
    for row in report["runs"].values():
        spread = f"{row['min']:.3f}-{row['max']:.3f}"
        delta = f"{row['points_vs_honest_fedavg']:+6.2f} ± {row['points_stderr']:.2f}"
        print(
            f"  {row['attack']:<12} {row['defence']:<30} {row['mean']:6.3f} "
            f"{row['stderr']:6.3f} {spread:>12} {delta:>13}"
        )


if __name__ == "__main__":
    main()
