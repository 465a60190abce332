"""``pocketml demo``: the end-to-end story on bundled data."""

from __future__ import annotations

from pathlib import Path

import typer

from pocketml.cli._common import console
from pocketml.demo import run_demo


def demo(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Directory for every output."),
) -> None:
    """Run pocketml end to end on the digits data and write DIR/report.json."""
    run_demo(out, console=console)
