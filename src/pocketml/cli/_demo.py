"""``pocketml demo``: the end-to-end story on bundled data."""

from __future__ import annotations

from pathlib import Path

import typer

from pocketml.cli._common import console
from pocketml.demo import CHAPTERS, run_demo

_CHAPTER_HELP = "Show only this chapter (repeat for several): " + ", ".join(
    f"{number} {name}" for number, name in CHAPTERS.items()
)


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Directory for every output."),
    chapter: list[int] | None = typer.Option(
        None,
        "--chapter",
        "-c",
        help=_CHAPTER_HELP + ". The chapters it builds on run first, quietly.",
    ),
) -> None:
    """Run pocketml end to end on the digits data and write DIR/report.json."""
    run_demo(out, console=console, chapters=chapter or None)
