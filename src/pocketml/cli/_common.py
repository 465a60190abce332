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

from pocketml._tables import Column, fitted_table
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


def print_table(title: str, columns: Sequence[str | Column], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as a Rich table that fits the terminal (``pocketml._tables``).

    A plain string column is text that wraps, except the first one: that is the row's name
    (a variant, model, metric, field) and shows whole. Pass a ``Column`` to say more, e.g.
    which columns may be dropped at a narrow width.
    """
    specs = [
        column
        if isinstance(column, Column)
        else Column(column, is_name=True)
        if i == 0
        else Column(column, wraps=True)
        for i, column in enumerate(columns)
    ]
    cells = [tuple("" if cell is None else str(cell) for cell in row) for row in rows]
    console.print(fitted_table(title, specs, cells, console.width))


def print_json(data: Any) -> None:
    """Print JSON for machines (``--json`` flags)."""
    console.print_json(json.dumps(data, default=str))
