"""``pocketml demo``: the end-to-end story on bundled data."""

from __future__ import annotations

from pathlib import Path

import typer

from pocketml.cli._common import console

# A copy of pocketml.demo.CHAPTERS for --help, which must not import the demo (it imports
# the server and every build stage); tests/cli/test_startup.py checks they agree.
CHAPTERS = {
    1: "Data",
    2: "Train",
    3: "Convert",
    4: "Optimize",
    5: "Ship",
    6: "Run on devices",
    7: "Watch the world change",
    8: "Close the loop",
    9: "Ship safely",
    10: "Hold the line",
    11: "Learn together",
}
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
    from pocketml.demo import run_demo

    run_demo(out, console=console, chapters=chapter or None)
