"""Rich tables of benchmark results and of estimates on device profiles."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from pocketml.bench.benchmark import BenchmarkResult

__all__ = ["print_results", "results_table"]


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


def results_table(results: Sequence[BenchmarkResult], title: str = "Benchmark") -> Table:
    """Build a Rich table with one row per variant.

    Args:
        results: benchmark results.
        title: the table's title.

    Returns:
        The table; size-only rows (Core ML) show "—" and say why in the note column.
    """
    table = Table(title=title)
    for column in ("variant", "format", "precision", "size MB", "zip MB", "load ms"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for column in ("p50 ms", "p95 ms", "p99 ms", "batch-32/s", "peak MB", "acc %", "F1 %"):
        table.add_column(column, justify="right")
    table.add_column("agree %", justify="right")
    table.add_column("note")
    for r in results:
        table.add_row(
            r.name,
            r.model_format,
            r.precision if r.method in ("none", r.precision) else f"{r.precision} {r.method}",
            f"{r.size_bytes / 1e6:.3f}",
            f"{r.zip_size_bytes / 1e6:.3f}",
            _fmt(r.load_ms, 1),
            _fmt(r.latency_p50_ms, 3),
            _fmt(r.latency_p95_ms, 3),
            _fmt(r.latency_p99_ms, 3),
            _fmt(r.throughput_per_s, 0),
            _fmt(r.peak_memory_mb, 1),
            _fmt(r.accuracy, 2, 100),
            _fmt(r.macro_f1, 2, 100),
            _fmt(r.agreement, 2, 100),
            r.note,
        )
    return table


def print_results(
    results: Sequence[BenchmarkResult], console: Console | None = None, title: str = "Benchmark"
) -> None:
    """Print :func:`results_table` to ``console`` (default: a new stdout console).

    Args:
        results: benchmark results.
        console: where to print.
        title: the table's title.
    """
    (console or Console()).print(results_table(results, title))
