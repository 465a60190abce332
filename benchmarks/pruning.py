"""Pruning benchmark: sparsity -> accuracy, file size, zip size and latency.

Trains ``cnn-large`` on digits (fixed seed), then prunes copies of it:

- the dense model fine-tuned for the same epochs without pruning (``dense+ft``, the fair
  control: pruned rows also get those extra epochs);
- unstructured global magnitude pruning at several sparsities (fine-tuned under the
  masks, zeros made permanent): same tensor shapes, so the same file size and latency;
  only the zip (what an app download costs) shrinks;
- structured channel pruning at several filter ratios (lowest-L1 filters removed, the
  following layers rewired, fine-tuned): smaller file and zip, and faster.

Every variant is exported to ONNX and measured by ``pocketml.bench.Benchmark`` (ONNX
Runtime, 1 thread, batch 1, each in its own subprocess) on the held-out test split.
Prints a Rich table (and a Markdown copy for docs/benchmarks.md) and writes
``benchmarks/results/pruning.json``.

Run: ``.venv/bin/python benchmarks/pruning.py`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from pocketml.bench import Benchmark, BenchmarkResult, Variant
from pocketml.convert.onnx import to_onnx
from pocketml.data import load_digits
from pocketml.optimize.prune import ChannelPruner, MagnitudePruner, PruneResult
from pocketml.train.trainer import TrainConfig, model_inputs, train

RESULTS = Path(__file__).parent / "results"
SEED = 0
SPARSITIES = (0.5, 0.7, 0.9, 0.95)
RATIOS = (0.25, 0.5, 0.75)
FINE_TUNE_EPOCHS = 3
console = Console(width=160)


def build_variants(work: Path) -> tuple[list[Variant], dict[str, dict[str, Any]], Any]:
    """Train the base model, prune it every way, export each to ONNX."""
    splits = load_digits().split(seed=SEED)
    base = train(splits, "cnn-large", config=TrainConfig(seed=SEED)).model
    variants = [Variant("dense", to_onnx(base, work / "dense.onnx"), "onnx")]
    info: dict[str, dict[str, Any]] = {
        "dense": {"method": "none", "target": 0.0, "parameters": base.num_parameters()}
    }
    # sparsity 0 = the same fine-tuning without pruning: the fair control for the rows below
    results: list[tuple[str, PruneResult]] = []
    for sparsity in (0.0, *SPARSITIES):
        pruner = MagnitudePruner(sparsity, fine_tune_epochs=FINE_TUNE_EPOCHS, seed=SEED)
        name = "dense+ft" if sparsity == 0 else f"magnitude-{sparsity:g}"
        results.append((name, pruner.apply(base, splits)))
    for ratio in RATIOS:
        pruner_c = ChannelPruner(ratio, fine_tune_epochs=FINE_TUNE_EPOCHS, seed=SEED)
        results.append((f"channel-{ratio:g}", pruner_c.apply(base, splits)))
    for name, result in results:
        variants.append(Variant(name, to_onnx(result.model, work / f"{name}.onnx"), "onnx"))
        info[name] = result.to_dict() | {"parameters": result.parameters_after}
        console.print(f"{name}: {json.dumps(info[name])}", markup=False)
    return variants, info, (model_inputs(base, splits.test), splits.test.labels)


def render(rows: list[dict[str, Any]]) -> str:
    """Print the table and return its Markdown copy."""
    from rich.table import Table

    header = [
        "variant",
        "sparsity",
        "params",
        "non-zero",
        "acc. before FT",
        "accuracy",
        "file KB",
        "zip KB",
        "p50 ms",
        "p95 ms",
    ]
    table = Table(title="Pruning cnn-large on digits (ONNX Runtime, 1 thread, batch 1)")
    for column in header:
        table.add_column(column, justify="right")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [
            row["name"],
            f"{row.get('sparsity', 0.0):.2f}",
            f"{row['parameters']:,}",
            f"{row.get('nonzero_parameters', row['parameters']):,}",
            f"{row['accuracy_pruned']:.3f}" if "accuracy_pruned" in row else "-",
            f"{row['accuracy_measured']:.3f}",
            f"{row['size_bytes'] / 1e3:.0f}",
            f"{row['zip_size_bytes'] / 1e3:.0f}",
            f"{row['latency_p50_ms']:.3f}",
            f"{row['latency_p95_ms']:.3f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    return "\n".join(lines)


def main() -> None:
    """Build, measure, print and save."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="pocketml-pruning-") as work:
        variants, info, (x_test, y_test) = build_variants(Path(work))
        measured: list[BenchmarkResult] = Benchmark(warmup=20, iterations=300).run(
            variants, x_test, y_test, reference="dense", show_progress=False
        )
    rows = []
    for result in measured:
        rows.append(
            info[result.name]
            | {
                "name": result.name,
                "accuracy_measured": result.accuracy,
                "agreement_with_dense": result.agreement,
                "size_bytes": result.size_bytes,
                "zip_size_bytes": result.zip_size_bytes,
                "latency_p50_ms": result.latency_p50_ms,
                "latency_p95_ms": result.latency_p95_ms,
            }
        )
    markdown = render(rows)
    console.print(markdown, markup=False, highlight=False)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "pruning.json"
    summary = {
        "model": "cnn-large",
        "dataset": "digits",
        "seed": SEED,
        "fine_tune_epochs": FINE_TUNE_EPOCHS,
        "host": {"platform": platform.platform(), "torch": torch.__version__},
        "rows": rows,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
