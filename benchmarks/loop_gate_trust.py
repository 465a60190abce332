"""The loop's two safety goals on digits: the gate's bad promotions and poisoned feedback.

Setting (the same for both parts): the digits split 55/15/30 (seed 0); the test split is the
golden holdout. The champion is an ``mlp`` trained on half of the training split (the
"original data"). The other half arrives from a fleet of 50 devices as labelled samples,
drifted (``dim=0.4,noise=0.15``, the demo's low light), 30 % of devices in class
``android-low``. Every model is converted to ONNX and scored through ``onnx_scorer``, as the
gate scores versions.

**Gate** (issue goal: 0 promotions of a model worse than the champion on the golden
holdout over >= 20 seeded runs, including deliberately damaged retrains). Each run
retrains on original + trusted training samples (``hold_out`` keeps 30 % fresh) and
damages a share of the runs: ``labels`` (40 % of training labels randomised), ``short``
(one epoch), ``samples-shuffled`` (the samples' labels permuted: a poisoned feed the
filter cannot see, since every device is equally wrong). The gate runs as after an alert.
A bad promotion is a blessed candidate whose golden accuracy is below the champion's. The
baseline "retrain on a schedule without gates" promotes every candidate.

**Poisoning** (issue goal: with 20 % of devices sending flipped labels, the promoted model
loses <= 1 point against the loop with honest devices). Per seed, three retrains on the
same rows: honest fleet (filter on), poisoned fleet with the filter, poisoned fleet without
it; accuracy on the drifted test split (the devices' world) and on the golden holdout.

Run: ``.venv/bin/python benchmarks/loop_gate_trust.py [--drift AUGMENT] [--out FILE]``
(under a minute on 2 cores). Writes ``benchmarks/results/loop_gate_trust.json``; the run
with chapter 7's new camera (``--drift dim=0.7,noise=0.35 --out
loop_gate_trust_new_camera.json``) shows what a retrain recovers when the drift is large.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.convert import to_onnx
from pocketml.data import Dataset, Splits, augment_dataset, load_digits, parse_augmentations
from pocketml.loop import (
    GatePolicy,
    LabelledSamples,
    Scorer,
    TrustPolicy,
    evaluate_gate,
    filter_samples,
    hold_out,
    onnx_scorer,
)
from pocketml.schema import ModelSchema
from pocketml.train import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
DRIFT = "dim=0.4,noise=0.15"
DEVICES = 50
DAMAGES = ("none", "labels", "short", "samples-shuffled")


def _fleet(rows: Dataset, *, liars: float, seed: int) -> LabelledSamples:
    """``rows`` drifted and spread over the fleet; ``liars`` of devices flip every label."""
    rng = np.random.default_rng(seed)
    drifted = augment_dataset(rows, parse_augmentations(DRIFT), seed=seed)
    n = len(rows)
    device = rng.integers(0, DEVICES, n)
    labels = np.asarray(rows.labels, dtype=np.int64).copy()
    lying = device < int(DEVICES * liars)
    labels[lying] = (labels[lying] + 1) % 10
    return LabelledSamples(
        model="digits",
        class_names=rows.class_names,
        features=np.asarray(drifted.features, dtype=np.float32),
        labels=labels,
        predicted=labels.copy(),
        confidence=np.full(n, 0.9, dtype=np.float32),
        sample_id=np.array([f"s{seed}-{i}" for i in range(n)]),
        device_id=np.array([f"dev-{d:02d}" for d in device]),
        device_class=np.where(device % 10 < 3, "android-low", "android-mid"),
        version=np.ones(n, dtype=np.int64),
        captured_at=np.zeros(n),
    )


def _train(
    original: Dataset, extra: LabelledSamples | None, splits: Splits, *, seed: int, epochs: int,
    noise: float = 0.0,
) -> tuple[Any, Dataset]:  # fmt: skip
    features, labels = original.features, np.asarray(original.labels)
    if extra is not None and len(extra):
        features = np.concatenate([features, extra.features])
        labels = np.concatenate([labels, extra.labels])
    labels = labels.copy()
    if noise:
        rng = np.random.default_rng(1000 + seed)
        hit = rng.random(len(labels)) < noise
        labels[hit] = rng.integers(0, 10, hit.sum())
    data = Dataset("digits", features, labels, original.class_names, layout=original.layout)
    parts = Splits(data, splits.validation, splits.test, seed)
    return train(parts, "mlp", config=TrainConfig(seed=seed, epochs=epochs)).model, data


def _scorer(model: Any, work: Path, name: str) -> Scorer:
    path = to_onnx(model, work / f"{name}.onnx")
    return onnx_scorer(path, ModelSchema.from_dict(model.schema.to_dict()))


def _accuracy(scorer: Scorer, data: Dataset) -> float:
    return float((scorer(data.features).argmax(axis=1) == np.asarray(data.labels)).mean())


def _gate_runs(runs: int, work: Path, setup: dict[str, Any]) -> list[dict[str, Any]]:
    splits, original, pool, champion = (
        setup["splits"], setup["original"], setup["pool"], setup["champion"],
    )  # fmt: skip
    golden = splits.test
    drifted_test = augment_dataset(splits.test, parse_augmentations(DRIFT), seed=99)
    champion_drifted = _accuracy(champion, drifted_test)
    champion_golden = _accuracy(champion, golden)
    out = []
    for seed in range(runs):
        damage = DAMAGES[seed % len(DAMAGES)]
        fleet = _fleet(pool, liars=0.0, seed=seed)
        teacher = champion(fleet.features)
        kept = filter_samples(fleet, teacher, TrustPolicy()).kept
        training, fresh = hold_out(kept, 0.3)
        if damage == "samples-shuffled":
            perm = np.random.default_rng(seed).permutation(len(training))
            training = LabelledSamples(
                **{
                    **{k: getattr(training, k) for k in training.__dataclass_fields__},
                    "labels": training.labels[perm],
                }
            )
        model, _ = _train(
            original, training, splits, seed=seed,
            epochs=1 if damage == "short" else 15, noise=0.4 if damage == "labels" else 0.0,
        )  # fmt: skip
        candidate = _scorer(model, work, f"gate-{seed}")
        result = evaluate_gate(
            candidate, champion, golden, fresh, trigger="alert", policy=GatePolicy(seed=seed)
        )
        gain = result.golden.gain or 0.0
        candidate_drifted = _accuracy(candidate, drifted_test)
        candidate_golden = _accuracy(candidate, golden)
        out.append(
            {
                # what each strategy leaves on the devices after this run: the champion
                # ("alert only"), every candidate ("schedule, no gate"), or the candidate
                # only when blessed (the loop)
                "deployed": {
                    "alert only": (champion_drifted, champion_golden),
                    "schedule, no gate": (candidate_drifted, candidate_golden),
                    "pocketml loop": (candidate_drifted, candidate_golden)
                    if result.blessed
                    else (champion_drifted, champion_golden),
                },
                "seed": seed,
                "damage": damage,
                "blessed": result.blessed,
                "golden_gain": gain,
                "fresh_gain": result.fresh.gain,
                "bad_promotion_gated": bool(result.blessed and gain < 0),
                "bad_promotion_ungated": bool(gain < 0),
                "reason": result.reason,
            }
        )
        print(f"gate run {seed:2d} {damage:17s} blessed={result.blessed!s:5s} golden {gain:+.3f}")
    return out


def _poisoning(seeds: int, work: Path, setup: dict[str, Any]) -> list[dict[str, Any]]:
    splits, original, pool, champion = (
        setup["splits"], setup["original"], setup["pool"], setup["champion"],
    )  # fmt: skip
    drifted_test = augment_dataset(splits.test, parse_augmentations(DRIFT), seed=99)
    out = []
    for seed in range(seeds):
        row: dict[str, Any] = {"seed": seed}
        for name, liars, use_filter in (
            ("honest", 0.0, True),
            ("poisoned+filter", 0.2, True),
            ("poisoned, no filter", 0.2, False),
        ):
            fleet = _fleet(pool, liars=liars, seed=seed)
            report = filter_samples(fleet, champion(fleet.features), TrustPolicy())
            kept = report.kept if use_filter else fleet
            training, _ = hold_out(kept, 0.3)
            model, _ = _train(original, training, splits, seed=seed, epochs=15)
            scorer = _scorer(model, work, f"poison-{seed}-{liars}-{use_filter}")
            row[name] = {
                "drifted": _accuracy(scorer, drifted_test),
                "golden": _accuracy(scorer, splits.test),
                "excluded_devices": len(report.excluded_devices) if use_filter else 0,
            }
        row["loss_vs_honest"] = row["honest"]["drifted"] - row["poisoned+filter"]["drifted"]
        print(
            f"poisoning seed {seed}: honest {row['honest']['drifted']:.3f}, poisoned+filter "
            f"{row['poisoned+filter']['drifted']:.3f} "
            f"(excluded {row['poisoned+filter']['excluded_devices']}), no filter "
            f"{row['poisoned, no filter']['drifted']:.3f}"
        )
        out.append(row)
    return out


def _print_strategies(strategies: dict[str, dict[str, Any]], runs: int) -> None:
    """The baselines on the same runs: what stays deployed, and how bad it can get."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"What each strategy leaves deployed over {runs} seeded runs")
    for column in (
        "strategy",
        "drifted acc. mean",
        "drifted min",
        "golden mean",
        "golden min",
        "bad promotions",
    ):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for name, row in strategies.items():
        table.add_row(
            name,
            f"{row['drifted_accuracy_mean']:.1%}",
            f"{row['drifted_accuracy_min']:.1%}",
            f"{row['golden_accuracy_mean']:.1%}",
            f"{row['golden_accuracy_min']:.1%}",
            str(row["bad_promotions"]),
        )
    Console(width=100).print(table)


def main() -> None:
    """Run both parts and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24, help="Seeded gate runs (>= 20).")
    parser.add_argument("--seeds", type=int, default=10, help="Seeds of the poisoning part.")
    parser.add_argument(
        "--drift",
        default="dim=0.4,noise=0.15",
        help="Augmentations of the devices' world (default: the demo's low light; "
        "'dim=0.7,noise=0.35' is chapter 7's new camera).",
    )
    parser.add_argument("--out", default="loop_gate_trust.json", help="File under results/.")
    args = parser.parse_args()
    globals()["DRIFT"] = args.drift
    started = time.perf_counter()
    data = load_digits()
    splits = data.split(validation=0.15, test=0.3, seed=0)
    half = len(splits.train) // 2
    order = np.random.default_rng(0).permutation(len(splits.train))

    def rows(index: np.ndarray) -> Dataset:
        t = splits.train
        return Dataset("digits", t.features[index], np.asarray(t.labels)[index],
                       t.class_names, layout=t.layout)  # fmt: skip

    original, pool = rows(order[:half]), rows(order[half:])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        champion_model, _ = _train(original, None, splits, seed=0, epochs=15)
        champion = _scorer(champion_model, work, "champion")
        setup = {"splits": splits, "original": original, "pool": pool, "champion": champion}
        gate = _gate_runs(args.runs, work, setup)
        poisoning = _poisoning(args.seeds, work, setup)
    losses = [row["loss_vs_honest"] for row in poisoning]
    strategies = {}
    for name, bad_key in (
        ("alert only", None),
        ("schedule, no gate", "bad_promotion_ungated"),
        ("pocketml loop", "bad_promotion_gated"),
    ):
        drifted = [r["deployed"][name][0] for r in gate]
        golden_acc = [r["deployed"][name][1] for r in gate]
        strategies[name] = {
            "drifted_accuracy_mean": round(float(np.mean(drifted)), 4),
            "drifted_accuracy_min": round(float(np.min(drifted)), 4),
            "golden_accuracy_mean": round(float(np.mean(golden_acc)), 4),
            "golden_accuracy_min": round(float(np.min(golden_acc)), 4),
            "bad_promotions": 0 if bad_key is None else sum(r[bad_key] for r in gate),
        }
    _print_strategies(strategies, len(gate))
    summary = {
        "gate_runs": len(gate),
        "damaged_runs": sum(r["damage"] != "none" for r in gate),
        "blessed": sum(r["blessed"] for r in gate),
        "bad_promotions_gated": sum(r["bad_promotion_gated"] for r in gate),
        "bad_promotions_ungated": sum(r["bad_promotion_ungated"] for r in gate),
        "drift": args.drift,
        "strategies": strategies,
        "poisoning_loss_vs_honest_points": [round(100 * x, 2) for x in losses],
        # the goal reads the mean over seeds: one retrain moves by a point or two either way
        "poisoning_mean_loss_points": {
            "with filter": round(100 * float(np.mean(losses)), 2),
            "without filter": round(
                100
                * float(
                    np.mean(
                        [
                            r["honest"]["drifted"] - r["poisoned, no filter"]["drifted"]
                            for r in poisoning
                        ]
                    )
                ),
                2,
            ),
        },
        "liars_excluded_of_10": [r["poisoned+filter"]["excluded_devices"] for r in poisoning],
        "poisoning_goal_met": float(np.mean(losses)) <= 0.01,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps({"summary": summary, "gate": gate, "poisoning": poisoning}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
