"""Rich tables of benchmark results that stay readable at 80 columns (names never cut)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from pocketml._tables import Column, fitted_table
from pocketml.bench.benchmark import BenchmarkResult

__all__ = ["print_results", "results_table"]


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    return "—" if value is None else f"{value * scale:.{digits}f}"


# Importance at a narrow width: 0 always stays; higher numbers are dropped first. Size,
# p95 latency and accuracy decide a selection (pocketml.optimize), so they stay longest.
_COLUMNS = (
    Column("variant", is_name=True),
    Column("format", priority=2),
    Column("precision", is_name=True),
    Column("size MB", "right"),
    Column("zip MB", "right", priority=6),
    Column("load ms", "right", priority=7),
    Column("p50 ms", "right", priority=5),
    Column("p95 ms", "right"),
    Column("p99 ms", "right", priority=8),
    Column("batch-32/s", "right", priority=9),
    Column("peak MB", "right", priority=4),
    Column("acc %", "right"),
    Column("F1 %", "right", priority=3),
    Column("agree %", "right", priority=1),
    Column("note", wraps=True),
)
_WIDE = 200


def results_table(
    results: Sequence[BenchmarkResult], title: str = "Benchmark", width: int = _WIDE
) -> Table:
    """Build a Rich table with one row per variant that fits ``width`` columns.

    Args:
        results: benchmark results.
        title: the table's title.
        width: the terminal width; narrower drops the less important columns (named in
            the caption), never the variant names.

    Returns:
        The table; size-only rows (Core ML) show "—" and say why in the note column.
    """
    rows = [
        (
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
        for r in results
    ]
    return fitted_table(title, _COLUMNS, rows, width)


def print_results(
    results: Sequence[BenchmarkResult], console: Console | None = None, title: str = "Benchmark"
) -> None:
    """Print :func:`results_table` to ``console`` (default: a new stdout console).

    Args:
        results: benchmark results.
        console: where to print.
        title: the table's title.
    """
    console = console or Console()
    console.print(results_table(results, title, width=console.width))
