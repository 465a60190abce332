"""Label-free accuracy on a shifted digits fleet: the estimate vs the realised accuracy.

The demo's model: ``cnn-small`` trained on digits with the demo's training augmentation
(``dim=0.6,noise=0.2``, seed 0). Its profile's calibration table (per confidence bin, how
often the model was right) is built two ways:

- ``train``: from the training split, as ``profile_model(model, splits.train)`` does in the
  demo and ``pocketml build`` today;
- ``held-out``: from the validation split, which the model never fitted (early stopping
  only read its loss): the fix the field uses (CBPE and NannyML calibrate on a reference
  period the model was not trained on; a histogram-binning recalibration, which is what
  the table is).

Device classes, from the test split (never seen by training, profile or early stopping):
``clean``; ``low-light`` (the demo's ``dim=0.4,noise=0.15``); darker and blurrier
(``dim=0.6`` and ``blur`` 0.1 ... 0.5, a Gaussian of sigma 0.2 ... 1 pixel on 8 x 8 digits),
each augmented with ``--copies`` seeds. Per class: the estimate (``estimate_accuracy`` on
the class's sketch: features, predicted class, confidence), the realised accuracy on the same
rows, and whether the estimate is within the issue's +-2 points. Beside CBPE, ATC (Garg et
al. 2022, "average thresholded confidence"): the confidence threshold above which the
reference's share of rows equals its accuracy, applied to the window; computed from the same
profile (reference confidence histogram and calibration table), interpolating within bins.

Run: ``.venv/bin/python benchmarks/accuracy_estimate.py`` (trains a small CNN: ~1 min).
Writes ``benchmarks/results/accuracy_estimate.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data import Dataset, augment_dataset, load_digits, parse_augmentations
from pocketml.monitor import (
    CONFIDENCE_BLOCK,
    ReferenceProfile,
    Sketch,
    estimate_accuracy,
    input_features,
    profile_model,
)
from pocketml.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
TRAIN_AUGMENT = "dim=0.6,noise=0.2"  # the demo's DemoConfig.train_augment
CLASSES = {
    "clean": "",
    "low-light": "dim=0.4,noise=0.15",  # the demo's DemoConfig.low_light
    "darker+blur 0.1": "dim=0.6,blur=0.1",  # blur sigma = 2 x strength pixels on 8x8 digits
    "darker+blur 0.2": "dim=0.6,blur=0.2",
    "darker+blur 0.3": "dim=0.6,blur=0.3",
    "darker+blur 0.5": "dim=0.6,blur=0.5",
}
GOAL = 0.02


def device_class(test: Dataset, augment: str, copies: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw images and labels of one device class (``copies`` augmented seeds)."""
    if not augment:
        return test.features, test.labels
    parts = [
        augment_dataset(test, parse_augmentations(augment), seed=50 + k) for k in range(copies)
    ]
    return (
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.labels for p in parts]),
    )


def share_above(counts: np.ndarray, threshold: float) -> float:
    """Share of a confidence histogram (equal bins on [0, 1]) above ``threshold``."""
    size = counts.size
    position = threshold * size
    whole = int(np.floor(position))
    above = counts[whole + 1 :].sum() if whole + 1 < size else 0.0
    partial = counts[whole] * (1 - (position - whole)) if whole < size else 0.0
    return float((above + partial) / counts.sum())


def atc(profile: ReferenceProfile, sketch: Sketch) -> float:
    """ATC estimate of the window's accuracy from the profile's reference histogram."""
    reference = profile.reference.block(CONFIDENCE_BLOCK).astype(np.float64)
    accuracy = float(np.sum(profile.calibration_correct or ()) / reference.sum())
    low, high = 0.0, 1.0
    for _ in range(50):  # share_above falls as the threshold rises: bisect
        mid = (low + high) / 2
        low, high = (mid, high) if share_above(reference, mid) > accuracy else (low, mid)
    return share_above(sketch.block(CONFIDENCE_BLOCK).astype(np.float64), (low + high) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "accuracy_estimate.json")
    args = parser.parse_args()
    started = time.perf_counter()
    digits = load_digits()
    splits = digits.split(seed=args.seed)
    run = train(
        splits,
        "cnn-small",
        config=TrainConfig(seed=args.seed, augmentations=tuple(parse_augmentations(TRAIN_AUGMENT))),
    )
    model = run.model
    profiles = {
        "train": profile_model(model, splits.train),
        "held-out": profile_model(model, splits.validation),
    }
    results: dict[str, Any] = {"classes": {}, "test_metrics": run.metrics}
    print(f"cnn-small test accuracy {run.metrics['accuracy']:.4f}")
    header = f"{'device class':<18}{'rows':>6}{'realised':>9}{'mean conf':>10}"
    header += "".join(f"{'CBPE ' + name:>22}{'ATC ' + name:>22}" for name in profiles)
    print(header)
    for label, augment in CLASSES.items():
        x, y = device_class(splits.test, augment, args.copies)
        x = x.reshape(len(x), *model.sample_shape)
        probabilities = model.predict_proba(model.schema.normalize(x))
        predicted = probabilities.argmax(axis=1)
        confidence = probabilities.max(axis=1)
        realised = float((predicted == y).mean())
        features = input_features(x, model.schema.input.layout)
        row: dict[str, Any] = {"rows": len(y), "realised": realised, "estimates": {}}
        row["mean_confidence"] = float(confidence.mean())
        line = f"{label:<18}{len(y):>6}{realised:>9.3f}{confidence.mean():>10.3f}"
        for name, profile in profiles.items():
            sketch = profile.sketch(features, predicted_class=predicted, confidence=confidence)
            estimate = estimate_accuracy(profile, sketch)
            for method, value in (("CBPE", estimate.value), ("ATC", atc(profile, sketch))):
                error = value - realised
                row["estimates"][f"{method} {name}"] = {
                    "value": value,
                    "error": error,
                    "within_goal": abs(error) <= GOAL,
                }
                mark = "ok" if abs(error) <= GOAL else "MISS"
                line += f"{value:>10.3f} ({error * 100:+5.1f} {mark:>4})"
        results["classes"][label] = row
        print(line)
    results["seconds"] = time.perf_counter() - started
    print(f"total {results['seconds']:.0f} s")
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
