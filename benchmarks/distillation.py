"""Distillation benchmark: does a cnn-large teacher close the student's accuracy gap?

Digits under mobile conditions: training augments half of every epoch with dimming and
noise, and the test set is an augmented copy of the held-out split built with a fixed
seed. For each seed: the teacher (``cnn-large``) is trained, then the student is trained
alone and distilled from the teacher with the same seed, epochs and data. The goal: the
distilled student closes at least half of the accuracy gap between the student alone
and the teacher, i.e. ``(distilled - alone) / (teacher - alone) >= 0.5``.

Prints a Rich table (and a Markdown copy for docs/benchmarks.md) and writes
``benchmarks/results/distillation.json``.

Run: ``.venv/bin/python benchmarks/distillation.py [--seeds 0 1 2] [--width 4]
[--temperature 4] [--alpha 0.7] [--schedule consistent|trainer] [--out results.json]``
(width 16 = ``cnn-small``). The demo task's goal is measured by ``bench_distill.py``.
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
from pocketml.optimize.distill import Distiller, student_cnn
from pocketml.train.trainer import TrainConfig, train

RESULTS = Path(__file__).parent / "results"
AUGMENTATIONS = "dim=0.6,noise=0.3"
TEST_AUGMENT_SEED = 1234
console = Console(width=160)


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Teacher, student alone and distilled student for one seed."""
    splits = load_digits().split(seed=seed)
    augmentations = tuple(parse_augmentations(AUGMENTATIONS))
    test = augment_dataset(splits.test, augmentations, seed=TEST_AUGMENT_SEED)
    config = TrainConfig(
        seed=seed, epochs=args.epochs, patience=args.patience, augmentations=augmentations
    )
    t0 = time.perf_counter()
    teacher = train(splits, "cnn-large", config=config).model
    teacher_s = time.perf_counter() - t0
    torch.manual_seed(seed)
    student: Any = (
        "cnn-small"
        if args.width == 16
        else student_cnn(splits.train.sample_shape, splits.train.num_classes, width=args.width)
    )
    t0 = time.perf_counter()
    result = Distiller(
        teacher,
        temperature=args.temperature,
        alpha=args.alpha,
        consistent=args.schedule == "consistent",
    ).train(student, splits, config, test=test)
    row = result.to_dict() | {
        "seed": seed,
        "teacher_parameters": teacher.num_parameters(),
        "teacher_train_s": round(teacher_s, 1),
        "students_train_s": round(time.perf_counter() - t0, 1),
        "clean_test": {
            "distilled": _accuracy(result.model, splits.test),
            "alone": _accuracy(result.alone_model, splits.test),
            "teacher": _accuracy(teacher, splits.test),
        },
    }
    console.print(f"seed {seed}: {json.dumps(row)}", markup=False)
    return row


def _accuracy(model: Any, dataset: Any) -> float:
    from pocketml.train.trainer import evaluate

    return float(evaluate(model, dataset)["accuracy"])


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Print the table and return its Markdown copy."""
    table = Table(title=escape(f"Distillation on digits [{AUGMENTATIONS}] (augmented test set)"))
    header = ["seed", "teacher", "student alone", "distilled", "gap closed", "clean: alone/dist."]
    for column in header:
        table.add_column(column, justify="right")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        gap = row["gap_closed"]
        cells = [
            str(row["seed"]),
            f"{row['teacher']['accuracy']:.3f}",
            f"{row['alone']['accuracy']:.3f}",
            f"{row['distilled']['accuracy']:.3f}",
            "n/a (no gap)" if gap is None else f"{gap:.2f}",
            f"{row['clean_test']['alone']:.3f} / {row['clean_test']['distilled']:.3f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    mean = {k: float(np.mean([r[k]["accuracy"] for r in rows])) for k in ("teacher", "alone")}
    mean["distilled"] = float(np.mean([r["distilled"]["accuracy"] for r in rows]))
    gap = (mean["distilled"] - mean["alone"]) / max(mean["teacher"] - mean["alone"], 1e-9)
    cells = [
        "mean",
        f"{mean['teacher']:.3f}",
        f"{mean['alone']:.3f}",
        f"{mean['distilled']:.3f}",
        f"{gap:.2f}",
        "",
    ]
    table.add_row(*cells, style="bold")
    lines.append("| " + " | ".join(f"**{c}**" if c else c for c in cells) + " |")
    console.print(table)
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run every seed, print and save the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--width", type=int, default=4, help="student width (16 = cnn-small)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    parser.add_argument(
        "--schedule",
        choices=("consistent", "trainer"),
        default="consistent",
        help="the distillation schedule ('trainer' reproduces the numbers measured before it)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "distillation.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [run_seed(seed, args) for seed in args.seeds]
    markdown = render(rows, args)
    console.print(markdown, markup=False, highlight=False)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "augmentations": AUGMENTATIONS,
        "test_augment_seed": TEST_AUGMENT_SEED,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "host": {"platform": platform.platform(), "torch": torch.__version__},
        "runs": rows,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
