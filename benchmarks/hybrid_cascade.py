"""Hybrid cascade on the demo task: share of the cloud model's accuracy vs. cloud traffic.

Goal (issue 5): >= 99 % of the cloud model's accuracy with <= 30 % of requests sent to the
cloud, on held-out digits under the demo's low-light augmentation.

For each seed: train cnn-small (device) and cnn-large (cloud) with the demo's settings,
calibrate the threshold on one half of the test split (4 low-light copies, bootstrap),
and evaluate on the other half under 5 further low-light draws. Baselines measured in the
same run: the device model alone and the cloud model alone.

    python benchmarks/hybrid_cascade.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from pocketml.data import augment_dataset, load_digits, parse_augmentations
from pocketml.demo import DemoConfig
from pocketml.demo._devices import calibrate_cascade, split_holdout
from pocketml.train import TrainConfig, model_inputs, train

RESULTS = Path(__file__).parent / "results" / "hybrid_cascade.json"


def measure(seed: int, demo: DemoConfig) -> dict[str, float]:
    splits = load_digits().split(seed=seed)
    augment = tuple(parse_augmentations(demo.train_augment))
    small = train(
        splits,
        "cnn-small",
        config=TrainConfig(seed=seed, epochs=demo.epochs_small, augmentations=augment),
    )
    large = train(
        splits,
        "cnn-large",
        config=TrainConfig(seed=seed, epochs=demo.epochs_large, augmentations=augment),
    )
    holdout, evaluation = split_holdout(splits)
    calibration = calibrate_cascade(small, large, holdout, demo.low_light, seed=seed)
    low = parse_augmentations(demo.low_light)
    draws = [augment_dataset(evaluation, low, seed=1000 + 10 * seed + k) for k in range(5)]
    local = np.concatenate([small.model.predict_proba(model_inputs(small.model, d)) for d in draws])
    cloud = np.concatenate([large.model.predict_proba(model_inputs(large.model, d)) for d in draws])
    labels = np.concatenate([d.labels for d in draws])
    escalate = local.max(axis=1) < calibration.threshold
    cascade = np.where(escalate, cloud.argmax(axis=1), local.argmax(axis=1))
    cloud_accuracy = float(np.mean(cloud.argmax(axis=1) == labels))
    cascade_accuracy = float(np.mean(cascade == labels))
    return {
        "seed": seed,
        "threshold": calibration.threshold,
        "samples": int(labels.size),
        "device_accuracy": float(np.mean(local.argmax(axis=1) == labels)),
        "cloud_accuracy": cloud_accuracy,
        "cascade_accuracy": cascade_accuracy,
        "share_of_cloud_accuracy": cascade_accuracy / cloud_accuracy,
        "cloud_share": float(escalate.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    demo = DemoConfig()
    rows = [measure(seed, demo) for seed in range(args.seeds)]
    table = Table(
        title=f"Hybrid cascade, low-light digits ({demo.low_light}), evaluation half x 5 draws"
    )
    for column in ("seed", "threshold", "device", "cloud", "cascade", "of cloud", "to cloud"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            str(r["seed"]),
            f"{r['threshold']:.3f}",
            f"{r['device_accuracy']:.4f}",
            f"{r['cloud_accuracy']:.4f}",
            f"{r['cascade_accuracy']:.4f}",
            f"{r['share_of_cloud_accuracy']:.2%}",
            f"{r['cloud_share']:.1%}",
        )
    mean_share = float(np.mean([r["share_of_cloud_accuracy"] for r in rows]))
    mean_cloud = float(np.mean([r["cloud_share"] for r in rows]))
    table.add_row("mean", "", "", "", "", f"{mean_share:.2%}", f"{mean_cloud:.1%}")
    console = Console()
    console.print(table)
    met = mean_share >= 0.99 and mean_cloud <= 0.30
    console.print(
        f"goal >= 99% of cloud accuracy with <= 30% to the cloud: {'met' if met else 'NOT met'}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "rows": rows,
                "mean_share_of_cloud_accuracy": mean_share,
                "mean_cloud_share": mean_cloud,
                "goal_met": met,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
