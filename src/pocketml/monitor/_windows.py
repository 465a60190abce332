"""Windows, groups and buckets of stored sketch rows: how a report sums what it reads.

The store keeps one row per version x device class x app version x hour. A report sums the
rows of its window per group (``group_rows``), for the whole fleet (``merge_rows``) and
per bucket of its series (``bucket_rows``); all three are plain additions of int64 counts,
so they commute with the devices' own merging. ``parse_window`` and ``check_group_by``
are the one place the report options are checked (the API, the CLI and the service).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput
from pocketml.monitor._store import WINDOW_S, StoredSketch

__all__ = [
    "DEFAULT_WINDOW_S",
    "GROUP_DIMENSIONS",
    "MAX_SERIES_POINTS",
    "MAX_WINDOW_S",
    "GroupKey",
    "Merged",
    "bucket_rows",
    "bucket_width",
    "check_group_by",
    "group_rows",
    "merge_rows",
    "parse_window",
]

DEFAULT_WINDOW_S = 86_400
MAX_WINDOW_S = 90 * 86_400
MAX_SERIES_POINTS = 48
GROUP_DIMENSIONS = ("device_class", "app_version")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}

GroupKey = tuple[tuple[str, str], ...]
"""A group's dimensions and values, e.g. ``(("device_class", "pixel-8"),)``; ``()`` = all."""


def parse_window(text: str | int) -> int:
    """Seconds of a window given as seconds (``86400``) or with a unit (``90m``, ``24h``, ``7d``).

    Raises:
        InvalidInput: not a number with an optional unit s/m/h/d, or outside
            [1 hour, 90 days] (the store's resolution is one hour).
    """
    raw = str(text).strip().lower()
    unit = _UNITS.get(raw[-1:], 0)
    number = raw[:-1] if unit else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise InvalidInput(
            f"window must be seconds or a number with a unit s/m/h/d (e.g. 24h, 7d); got {text!r}."
        )
    seconds = round(value)
    if not WINDOW_S <= seconds <= MAX_WINDOW_S:
        raise InvalidInput(
            f"window must be between 1h and 90d (sketches are stored per hour); got {text!r}."
        )
    return seconds


def check_group_by(group_by: Iterable[str]) -> tuple[str, ...]:
    """``group_by`` as a tuple of known, distinct dimensions (or ``InvalidInput``)."""
    dims = tuple(group_by)
    unknown = [d for d in dims if d not in GROUP_DIMENSIONS]
    if unknown or len(set(dims)) != len(dims):
        raise InvalidInput(
            f"group_by must be distinct names among {', '.join(GROUP_DIMENSIONS)} (or none); "
            f"got {', '.join(dims) or 'nothing'}."
        )
    return dims


def bucket_width(window_s: int) -> int:
    """Seconds per series point: whole hours, at most ``MAX_SERIES_POINTS`` points."""
    return math.ceil(window_s / WINDOW_S / MAX_SERIES_POINTS) * WINDOW_S


@dataclass
class Merged:
    """A running sum of stored rows: one group's (or bucket's) window."""

    n: int
    counts: npt.NDArray[np.int64]
    noise_variance: float = 0.0
    events: int = 0

    @classmethod
    def empty(cls, size: int) -> Merged:
        """No rows, ``size`` bins."""
        return cls(0, np.zeros(size, dtype=np.int64))

    def add(self, row: StoredSketch) -> None:
        """Add a stored row (its counts in the same layout)."""
        self.n += row.n
        self.counts = self.counts + row.counts
        self.noise_variance += row.noise_variance
        self.events += row.events


def merge_rows(rows: Iterable[StoredSketch], size: int) -> Merged:
    """Every row summed."""
    total = Merged.empty(size)
    for row in rows:
        total.add(row)
    return total


def group_rows(
    rows: Iterable[StoredSketch], dims: Sequence[str], size: int
) -> dict[GroupKey, Merged]:
    """The rows summed per value of ``dims`` (one group, ``()``, when ``dims`` is empty)."""
    groups: dict[GroupKey, Merged] = {}
    for row in rows:
        key = tuple((dim, str(getattr(row.key, dim))) for dim in dims)
        groups.setdefault(key, Merged.empty(size)).add(row)
    return groups


def bucket_rows(
    rows: Iterable[StoredSketch], since: int, until: int, width: int, size: int
) -> list[tuple[int, int, Merged]]:
    """``[since, until)`` cut into buckets of ``width`` seconds ending at ``until`` (the
    oldest clipped at ``since``), each with its rows summed; oldest first."""
    count = math.ceil((until - since) / width)
    edges = [max(since, until - k * width) for k in range(count, -1, -1)]
    buckets = [(edges[i], edges[i + 1], Merged.empty(size)) for i in range(count)]
    for row in rows:
        index = int(np.searchsorted(edges, row.key.window_start, side="right")) - 1
        buckets[min(max(index, 0), count - 1)][2].add(row)
    return buckets
