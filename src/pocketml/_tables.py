"""Rich tables that fit the terminal without cutting a name.

Rich squeezes a table that is too wide by shortening cells with "…", so at 80 columns a
benchmark table showed ``cnn-small-onn…`` for every variant: the one thing a reader came
for. Here a table is fitted before Rich sees it: name columns (variants, models, metrics)
are never shortened, free text wraps, and when the columns still do not fit, the least
important ones are dropped and named in the caption. The CLI (``pocketml.cli``) and the
benchmark report (``pocketml.bench.report``) share it; it imports only Rich.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len
from rich.table import Table

__all__ = ["Column", "fitted_table"]

# Each column costs its padding (one space either side) and one border line; the table one
# more border line.
_COLUMN_CHROME = 3
_TEXT_MIN_WIDTH = 16


@dataclass(frozen=True)
class Column:
    """One column of a fitted table.

    Attributes:
        header: the column's header.
        justify: "left" for text, "right" for numbers.
        priority: 0 keeps the column at every width; higher numbers are dropped first
            when the table does not fit.
        is_name: the cells are names (or comma lists of names) that must show whole: the
            column is never narrower than its longest name.
        wraps: free text (a note, a reason) that wraps into whatever width is left.
    """

    header: str
    justify: Literal["left", "right"] = "left"
    priority: int = 0
    is_name: bool = False
    wraps: bool = False


def _longest_word(cells: Sequence[str]) -> int:
    return max((cell_len(word) for cell in cells for word in cell.split()), default=1)


def _min_width(column: Column, cells: Sequence[str]) -> int:
    natural = max([cell_len(column.header), *(cell_len(c) for c in cells)])
    if column.is_name:
        return max(_longest_word(cells), min(natural, cell_len(column.header)))
    if column.wraps:
        return min(natural, max(_TEXT_MIN_WIDTH, cell_len(column.header)))
    return natural


def fitted_table(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int,
) -> Table:
    """Build a table that fits ``width`` terminal columns, names whole.

    Args:
        title: the table's title (None for none).
        columns: the columns, in display order.
        rows: one string per column per row.
        width: the terminal width to fit (``console.width``).

    Returns:
        A Rich table holding the columns that fit; when some were dropped, the caption
        names them.
    """
    cells = [[row[i] for row in rows] for i in range(len(columns))]
    needs = [_min_width(c, cells[i]) + _COLUMN_CHROME for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    # Drop the least important column (the rightmost among equals) until the rest fits.
    while sum(needs[i] for i in shown) + 1 > width:
        droppable = [i for i in shown if columns[i].priority > 0]
        if not droppable:
            break
        shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    hidden = [columns[i].header for i in range(len(columns)) if i not in shown]
    caption = f"not shown at {width} columns: {', '.join(hidden)}" if hidden else None
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for i in shown:
        column = columns[i]
        if column.is_name:
            table.add_column(column.header, min_width=needs[i] - _COLUMN_CHROME, overflow="fold")
        elif column.wraps:
            table.add_column(column.header, justify=column.justify, overflow="fold")
        else:
            table.add_column(column.header, justify=column.justify, no_wrap=True)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    return table
