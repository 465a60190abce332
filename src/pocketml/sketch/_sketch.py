"""Sketches: integer counts per fixed bin, the only thing a device sends about its inputs.

A ``Sketch`` holds, for one window of scored rows, the counts of every monitored block of
the profile's ``SketchLayout``: each feature (and each PCA projection, ``@pc1`` ...), the
predicted class (``@prediction``) and a 20-bin confidence histogram (``@confidence``).
All counts live in one flat int64 array in layout order, so merging 10,000 device
sketches is one ``numpy.sum`` over a stacked array, not 10,000 x 100 dictionary walks.

Merging is addition: associative, commutative, and the sketch of two halves merged equals
the sketch of the whole, because every row lands in exactly one bin per block.

``parse_sketch`` is the server's gate for a sketch a device sends: the block names, the
bin counts per block, integer counts in ``[0, n]`` summing to ``n`` per block, and ``n``
below ``MAX_SKETCH_ROWS``; anything else is an ``InvalidInput`` naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput

__all__ = [
    "CONFIDENCE_BINS",
    "CONFIDENCE_BLOCK",
    "MAX_SKETCH_ROWS",
    "PREDICTION_BLOCK",
    "Sketch",
    "SketchLayout",
    "confidence_counts",
    "merge_sketches",
    "parse_sketch",
]

CONFIDENCE_BINS = 20
PREDICTION_BLOCK = "@prediction"
CONFIDENCE_BLOCK = "@confidence"
# One device window counts at most this many rows; more is a broken or hostile sender.
MAX_SKETCH_ROWS = 10**9
MAX_BLOCKS = 1024


@dataclass(frozen=True)
class SketchLayout:
    """The named blocks of a sketch and their bin counts, in a fixed order."""

    names: tuple[str, ...]
    sizes: tuple[int, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.sizes)]))

    @property
    def total(self) -> int:
        return int(sum(self.sizes))

    def slice_of(self, name: str) -> slice:
        """The flat-array slice of block ``name``."""
        index = self.names.index(name)
        offsets = self.offsets
        return slice(offsets[index], offsets[index + 1])


@dataclass(frozen=True, eq=False)
class Sketch:
    """Counts of one window: ``n`` rows, every block's bins in one flat int64 array."""

    layout: SketchLayout
    n: int
    counts: npt.NDArray[np.int64]

    def block(self, name: str) -> npt.NDArray[np.int64]:
        """The counts of one block (a view)."""
        return self.counts[self.layout.slice_of(name)]

    def merge(self, other: Sketch) -> Sketch:
        """The sketch of both windows together (same layout required)."""
        return merge_sketches([self, other])

    def to_dict(self) -> dict[str, Any]:
        """Compact JSON form: ``{"n": int, "counts": {block: [int, ...]}}``."""
        offsets = self.layout.offsets
        return {
            "n": self.n,
            "counts": {
                name: self.counts[offsets[i] : offsets[i + 1]].tolist()
                for i, name in enumerate(self.layout.names)
            },
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        return (
            self.layout == other.layout
            and self.n == other.n
            and bool(np.array_equal(self.counts, other.counts))
        )

    __hash__ = None  # type: ignore[assignment]


def merge_sketches(sketches: Iterable[Sketch]) -> Sketch:
    """Sum sketches of one layout into one.

    Raises:
        InvalidInput: no sketch, or sketches of different layouts (other profile versions).
    """
    items = list(sketches)
    if not items:
        raise InvalidInput("merge_sketches needs at least one sketch; got none.")
    layout = items[0].layout
    for position, item in enumerate(items):
        if item.layout != layout:
            raise InvalidInput(
                f"sketch {position} has another layout than sketch 0; merge only sketches "
                "built against the same reference profile."
            )
    stacked = np.stack([item.counts for item in items])
    return Sketch(layout, int(sum(item.n for item in items)), stacked.sum(axis=0))


def confidence_counts(confidence: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The 20-bin histogram of confidences in [0, 1] (1.0 lands in the last bin)."""
    values = np.asarray(confidence, dtype=np.float64)
    if values.size and (np.isnan(values).any() or values.min() < 0 or values.max() > 1):
        raise InvalidInput("confidence must be numbers in [0, 1]; clip or fix the model output.")
    index = np.minimum((values * CONFIDENCE_BINS).astype(np.int64), CONFIDENCE_BINS - 1)
    return np.bincount(index, minlength=CONFIDENCE_BINS).astype(np.int64)


def parse_sketch(data: object, layout: SketchLayout) -> Sketch:
    """Validate a sketch sent as JSON against the profile's layout.

    Raises:
        InvalidInput: the message names the field (``n``, ``counts.<block>`` or
            ``counts.<block>[i]``), what was expected and what was given.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput(f"sketch must be an object {{n, counts}}; got {type(data).__name__}.")
    n = data.get("n")
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_SKETCH_ROWS:
        raise InvalidInput(f"n must be an integer in [0, {MAX_SKETCH_ROWS}]; got {n!r}.")
    counts = data.get("counts")
    if not isinstance(counts, Mapping) or len(counts) > MAX_BLOCKS:
        raise InvalidInput("counts must be an object of block name -> list of integers.")
    unknown = sorted(set(counts) - set(layout.names))
    missing = [name for name in layout.names if name not in counts]
    if unknown or missing:
        raise InvalidInput(
            f"counts must have exactly the profile's blocks; unknown {unknown[:5]}, "
            f"missing {missing[:5]}. Build the sketch against this version's profile."
        )
    flat = np.empty(layout.total, dtype=np.int64)
    offsets = layout.offsets
    for index, (name, size) in enumerate(zip(layout.names, layout.sizes, strict=True)):
        flat[offsets[index] : offsets[index + 1]] = _parse_block(name, counts[name], size, n)
    return Sketch(layout, n, flat)


def _parse_block(name: str, value: object, size: int, n: int) -> npt.NDArray[np.int64]:
    field = f"counts.{name}"
    if not isinstance(value, list) or len(value) != size:
        given = len(value) if isinstance(value, list) else type(value).__name__
        raise InvalidInput(f"{field} must be a list of {size} bin counts; got {given}.")
    for position, count in enumerate(value):
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n:
            raise InvalidInput(
                f"{field}[{position}] must be an integer in [0, n={n}]; got {count!r}."
            )
    array = np.asarray(value, dtype=np.int64)
    total = int(array.sum())
    if total != n:
        raise InvalidInput(f"{field} must sum to n={n} (every row lands in one bin); got {total}.")
    return array
