"""How a retraining job reads for people: the tables ``pocketml loop status`` and the demo print.

One home for the job's rendering (steps with their seconds, the gate's numbers per set), so
the CLI and the demo's loop chapter say the same thing the same way. Numbers are accuracy
in percent and changes in points, with the gate's paired-bootstrap interval.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pocketml._tables import Column, fitted_table
from pocketml.server.schemas_loop import JobPublic

__all__ = ["gate_summary", "gate_table", "points", "steps_table"]


def points(value: float | None) -> str:
    """A change of accuracy in points, signed ("+3.1"), "-" for none."""
    return "-" if value is None else f"{value * 100:+.1f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def gate_summary(job: JobPublic) -> str:
    """One line: the verdict, the golden change and the fresh change with its interval."""
    if not job.gate:
        return job.error or "-"
    fresh, golden = job.gate.get("fresh", {}), job.gate.get("golden", {})
    verdict = "blessed" if job.gate.get("blessed") else "rejected"
    return (
        f"{verdict}: golden {points(golden.get('gain'))}, fresh "
        f"{points(fresh.get('gain'))} [{points(fresh.get('ci_low'))}, "
        f"{points(fresh.get('ci_high'))}] pts"
    )


def steps_table(job: JobPublic, width: int, *, title: str = "Steps") -> Table:
    """The job's steps with their durations (and start times when there is room)."""
    return fitted_table(
        title,
        [Column("step", is_name=True), Column("seconds", "right"), Column("started", priority=1)],
        [(s["step"], f"{s['seconds']:.2f}", str(s["started_at"])[11:19]) for s in job.steps],
        width,
    )


def gate_table(gate: dict[str, Any], width: int, *, title: str = "Gate (accuracy, %)") -> Table:
    """Candidate vs champion on the golden holdout, the fresh samples and each device class,
    with the change in points and its interval."""
    sets: list[tuple[str, dict[str, Any]]] = [
        ("golden holdout", gate["golden"]),
        ("fresh samples", gate["fresh"]),
        *[(f"class {name}", score) for name, score in gate.get("per_class", {}).items()],
    ]
    rows = [
        (
            name,
            f"{score.get('n') or 0:,}",
            _percent(score.get("candidate")),
            _percent(score.get("champion")),
            points(score.get("gain")),
            "-"
            if score.get("ci_low") is None
            else f"[{points(score.get('ci_low'))}, {points(score.get('ci_high'))}]",
        )
        for name, score in sets
    ]
    return fitted_table(
        title,
        [
            Column("set", is_name=True),
            Column("n", "right"),
            Column("candidate", "right"),
            Column("champion", "right"),
            Column("gain", "right"),
            Column("interval", "right", priority=1),
        ],
        rows,
        width,
    )
