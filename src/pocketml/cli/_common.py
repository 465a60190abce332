"""What every CLI command shares: the consoles, path checks, and result tables.

Commands stay thin (STYLE.md rule 3): parse arguments, call one library function, print
its result. Errors are mapped to exit codes in one place, ``pocketml.cli.main``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pocketml.errors import InvalidInput, NotFound

console = Console()
err_console = Console(stderr=True)


def existing_path(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else raise NotFound naming what was expected."""
    if not path.exists():
        raise NotFound(f"{what} {str(path)!r} does not exist. Check the path and try again.")
    return path


def split_csv_option(value: str, option: str, allowed: Iterable[str]) -> list[str]:
    """Split ``a,b,c`` into a list and check each item against ``allowed``."""
    allowed_set = list(allowed)
    items = [item.strip().lower() for item in value.split(",") if item.strip()]
    if not items:
        raise InvalidInput(f"{option} needs at least one of {', '.join(allowed_set)}.")
    unknown = [item for item in items if item not in allowed_set]
    if unknown:
        raise InvalidInput(
            f"{option} got unknown value(s) {', '.join(unknown)}; "
            f"choose from {', '.join(allowed_set)}."
        )
    return items


def print_table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as a Rich table."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_json(data: Any) -> None:
    """Print JSON for machines (``--json`` flags)."""
    console.print_json(json.dumps(data, default=str))
