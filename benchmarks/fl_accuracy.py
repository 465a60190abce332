"""Accuracy of federated rounds on non-IID digits vs centralised training, in one run.

    PYTHONPATH=src python benchmarks/fl_accuracy.py [--rounds 40] [--json FILE]

The digits set (1,797 8x8 images; pixels / 16 stand in for a frozen backbone's
embeddings), 1,400 for training split over 50 clients that each hold two classes, 397 for
the test. Each round samples 20 clients; each trains the softmax head for 2 epochs.
Rows: centralised training on all 1,400 samples (same recipe, rounds x 2 epochs);
FedAvg; FedAvg under SecAgg+; DP-FedAvg at two noise multipliers with the ε it spent
(δ = 1e-5) — for this toy population of 50 (q = 0.4) and, at the same noise per round, for
a cohort of 20 drawn from 10,000 devices (q = 0.002: the same model, a far smaller ε).
Seeds are fixed; one run per row. Attackers and the robust aggregators: fl_robustness.py
(over many seeds).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from pocketml.data import load_digits
from pocketml.federated import PrivacyAccountant, SimulationConfig, simulate
from pocketml.fl import Head, LocalRecipe, train_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on orders
    with threadpool_limits(1):
        report = _run(args.rounds)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _run(rounds: int) -> dict[str, Any]:
    data = load_digits()
    x = data.features.reshape(len(data.labels), -1) / 16.0
    order = np.random.default_rng(0).permutation(len(data.labels))
    tr, te = order[:1400], order[1400:]
    recipe = LocalRecipe(epochs=2, batch_size=16, learning_rate=0.1)
    central = Head.zeros(64, 10)
    central = central.with_vector(
        train_head(central, x[tr], data.labels[tr], LocalRecipe(2 * rounds, 16, 0.1), seed=0)
    )
    rows: dict[str, Any] = {"centralised": {"accuracy": central.accuracy(x[te], data.labels[te])}}
    base = {"n_clients": 50, "clients_per_round": 20, "rounds": rounds, "recipe": recipe}
    cases = {
        "fedavg": {},
        "fedavg + secagg (clip 1)": {"clip_norm": 1.0, "secure_aggregation": True},
        "dp-fedavg z=0.5 (clip 1)": {"clip_norm": 1.0, "noise_multiplier": 0.5},
        "dp-fedavg z=1.0 (clip 1)": {"clip_norm": 1.0, "noise_multiplier": 1.0},
        "dp-fedavg z=1.0 + secagg": {
            "clip_norm": 1.0,
            "noise_multiplier": 1.0,
            "secure_aggregation": True,
        },
    }
    for name, extra in cases.items():
        start = time.perf_counter()
        result = simulate(
            x[tr], data.labels[tr], x[te], data.labels[te], SimulationConfig(**base, **extra)
        )
        row: dict[str, Any] = {
            "accuracy": result.accuracy[-1],
            "seconds": time.perf_counter() - start,
        }
        if result.epsilon:
            row["epsilon_q0.4"] = result.epsilon[-1]
            big = PrivacyAccountant(extra["noise_multiplier"], 20 / 10_000, 1e-5)
            big.rounds = rounds
            row["epsilon_q0.002"] = big.spent().epsilon
        rows[name] = row
    print(f"non-IID digits, 50 clients x 2 classes, 20 per round, {rounds} rounds (test n = 397)")
    print(f"  {'run':<32} {'accuracy':>8} {'ε (50 devices)':>15} {'ε (10,000)':>11} {'s':>6}")
    for name, row in rows.items():
        eps = (
            f"{row['epsilon_q0.4']:15.2f} {row['epsilon_q0.002']:11.3f}"
            if "epsilon_q0.4" in row
            else f"{'':>15} {'':>11}"
        )
        secs = f"{row['seconds']:6.1f}" if "seconds" in row else ""
        print(f"  {name:<32} {row['accuracy']:8.3f} {eps} {secs}")
    return {"rounds": rounds, "rows": rows}


if __name__ == "__main__":
    main()
