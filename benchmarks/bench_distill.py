"""Distillation on the demo task: does the distilled cnn-small close half the teacher gap?

The demo's task and conditions: digits, training augments with ``dim=0.6,noise=0.2``;
the held-out test split is measured in the demo's low light (``dim=0.4,noise=0.15``) and
through the new camera of chapter 7 (``dim=0.7,noise=0.35``), each an augmented copy
built with a fixed seed. Per seed, in the same run and on the same data: the teacher
(``cnn-large``, 40 epochs, the best validation epoch kept, as ``[distill]`` trains it),
``cnn-small`` trained alone (the demo's recipe: 30 epochs, early stopping), ``cnn-small``
distilled with the consistent-teaching schedule (the default) and with the trainer's
schedule (``consistent=False``, what pocketml did before). Goal: the distilled student
closes at least half of the accuracy gap between the student alone and the teacher,
``(distilled - alone) / (teacher - alone) >= 0.5``, on the mean over seeds.

Prints a table per seed and the mean, and writes ``benchmarks/results/bench_distill.json``.

Run: ``.venv/bin/python benchmarks/bench_distill.py [--seeds 0 1 2] [--temperature 4]
[--alpha 0.7] [--teacher-epochs 40] [--out results.json]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pocketml.data import augment_dataset, load_digits, parse_augmentations
from pocketml.optimize.distill import Distiller
from pocketml.train.trainer import TrainConfig, evaluate, train

RESULTS = Path(__file__).parent / "results"
TRAIN_AUGMENT = "dim=0.6,noise=0.2"
CONDITIONS = {"low light": "dim=0.4,noise=0.15", "new camera": "dim=0.7,noise=0.35"}
TEST_AUGMENT_SEED = 1234
MODELS = ("alone", "distilled", "distilled (trainer schedule)", "teacher")
console = Console(width=170)


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Teacher, student alone and both distilled students for one seed."""
    splits = load_digits().split(seed=seed)
    augmentations = tuple(parse_augmentations(TRAIN_AUGMENT))
    tests = {
        name: augment_dataset(splits.test, parse_augmentations(text), seed=TEST_AUGMENT_SEED)
        for name, text in CONDITIONS.items()
    }
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    teacher_config = TrainConfig(
        seed=seed,
        epochs=args.teacher_epochs,
        patience=args.teacher_epochs,
        augmentations=augmentations,
    )
    teacher = train(splits, "cnn-large", config=teacher_config).model
    timings["teacher_s"] = round(time.perf_counter() - t0, 1)
    config = TrainConfig(seed=seed, augmentations=augmentations)
    settings = {"temperature": args.temperature, "alpha": args.alpha}
    t0 = time.perf_counter()
    result = Distiller(teacher, **settings).train("cnn-small", splits, config)
    timings["alone_and_distilled_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    old = Distiller(teacher, **settings, consistent=False).train(
        "cnn-small", splits, config, baseline=False
    )
    timings["trainer_schedule_s"] = round(time.perf_counter() - t0, 1)
    assert result.alone_model is not None
    models = dict(zip(MODELS, (result.alone_model, result.model, old.model, teacher), strict=True))
    accuracy = {
        condition: {name: float(evaluate(m, data)["accuracy"]) for name, m in models.items()}
        for condition, data in tests.items()
    }
    accuracy["clean"] = {
        name: float(evaluate(m, splits.test)["accuracy"]) for name, m in models.items()
    }
    row = {
        "seed": seed,
        "accuracy": accuracy,
        "best_epoch": {
            "alone": result.alone_model.params["best_epoch"],
            "distilled": result.model.params["best_epoch"],
            "teacher": teacher.params["best_epoch"],
        },
        "parameters": {
            "student": result.model.num_parameters(),
            "teacher": teacher.num_parameters(),
        },
        "timings": timings,
    }
    console.print(f"seed {seed}: {json.dumps(row)}", markup=False)
    return row


def gap_closed(acc: dict[str, float], model: str = "distilled") -> float | None:
    """(model - alone) / (teacher - alone), or None without a gap."""
    gap = acc["teacher"] - acc["alone"]
    return None if gap <= 0 else (acc[model] - acc["alone"]) / gap


def _pooled(accuracy: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean([accuracy[c][m] for c in CONDITIONS])) for m in MODELS}


def render(rows: list[dict[str, Any]]) -> str:
    """Print the table and return its Markdown copy."""
    header = [
        "seed",
        "test set",
        "alone",
        "distilled",
        "teacher",
        "gap closed",
        "trainer schedule",
        "its gap closed",
    ]
    table = Table(title=escape(f"cnn-large -> cnn-small on digits, trained [{TRAIN_AUGMENT}]"))
    for column in header:
        table.add_column(column, justify="right")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]

    def fmt(gap: float | None) -> str:
        return "n/a (no gap)" if gap is None else f"{gap:.2f}"

    def add(seed: str, test: str, acc: dict[str, float], bold: bool = False) -> None:
        cells = [
            seed,
            test,
            f"{acc['alone']:.3f}",
            f"{acc['distilled']:.3f}",
            f"{acc['teacher']:.3f}",
            fmt(gap_closed(acc)),
            f"{acc['distilled (trainer schedule)']:.3f}",
            fmt(gap_closed(acc, "distilled (trainer schedule)")),
        ]
        table.add_row(*cells, style="bold" if bold else None)
        lines.append("| " + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")

    for row in rows:
        for condition in (*CONDITIONS, "clean"):
            add(str(row["seed"]), condition, row["accuracy"][condition])
        add(str(row["seed"]), "both shifted", _pooled(row["accuracy"]))
    for condition in (*CONDITIONS, "clean"):
        mean = {m: float(np.mean([r["accuracy"][condition][m] for r in rows])) for m in MODELS}
        add("mean", condition, mean, bold=True)
    pooled = {m: float(np.mean([_pooled(r["accuracy"])[m] for r in rows])) for m in MODELS}
    add("mean", "both shifted", pooled, bold=True)
    console.print(table)
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run every seed, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument("--teacher-epochs", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_distill.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run_seed(seed, args) for seed in args.seeds]
    markdown = render(rows)
    console.print(markdown, markup=False, highlight=False)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    pooled = {m: float(np.mean([_pooled(r["accuracy"])[m] for r in rows])) for m in MODELS}
    summary = {
        "train_augment": TRAIN_AUGMENT,
        "conditions": CONDITIONS,
        "test_augment_seed": TEST_AUGMENT_SEED,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {"platform": platform.platform(), "torch": torch.__version__},
        "mean_gap_closed_shifted": gap_closed(pooled),
        "goal_met": (gap_closed(pooled) or 0.0) >= 0.5,
        "runs": rows,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
