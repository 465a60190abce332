"""HTTP ``Range`` header parsing for package downloads (resume after a cut download).

One range per request is supported (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); a header
this server does not understand (another unit, several ranges, bad syntax) is ignored and
the whole package is served, as RFC 9110 allows. A range that selects no byte raises
``RangeNotSatisfiable`` (416), and so does a position of more than 19 digits (no package
is 10^19 bytes; converting thousands of digits to an int would raise ``ValueError``) and a
header longer than 1,024 characters (it is never one sane range).
"""

from __future__ import annotations

import re

from pocketml.server.errors import RangeNotSatisfiable

__all__ = ["parse_range"]

_SINGLE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
MAX_DIGITS = 19
MAX_HEADER = 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against a file of ``size`` bytes.

    Args:
        header: the raw header value, or None.
        size: the file size in bytes.

    Returns:
        ``(start, end)`` with ``end`` inclusive, or None to serve the whole file.

    Raises:
        RangeNotSatisfiable: a valid single range that selects no byte of the file.
    """
    if not header:
        return None
    if len(header) > MAX_HEADER:
        raise _unsatisfiable(f"{header[:40]}...", size)
    match = _SINGLE.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if len(first) > MAX_DIGITS or len(last) > MAX_DIGITS:
        raise _unsatisfiable(f"{header[:40]}...", size)
    if not first:  # suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignore
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, min(end, size - 1)


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"Range {header!r} selects no byte of this {size}-byte package; ask for a range "
        f"inside bytes=0-{max(size - 1, 0)}.",
        size,
    )
