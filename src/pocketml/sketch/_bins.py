"""Fixed bins: how one monitored value becomes one integer bin index, the same on every device.

Drift is computed from counts, so the bins are the contract between the reference profile
(built once from the training split) and every device sketch. They are fixed when the
version is built and never adapt to the data they see, which is what makes sketches from
different devices and hours mergeable by plain addition.

- numeric: edges at reference quantiles (0.1 %, 1/B, ..., (B-1)/B, 99.9 %), deduplicated, so
  the inner bins hold about the same reference mass; values below the first edge go to an
  underflow bin, values at or above the last to an overflow bin (values outside the
  training range are a drift signal of their own). ``len(edges) + 1`` bins.
- categorical: the reference's top-k values by frequency, then "other" (values never seen,
  or rare). ``len(categories) + 1`` bins.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput

__all__ = [
    "DEFAULT_BINS",
    "DEFAULT_TOP_K",
    "MAX_BINS",
    "MIN_BINS",
    "FeatureBins",
    "categorical_bins",
    "numeric_bins",
]

MIN_BINS = 16
MAX_BINS = 32
DEFAULT_BINS = 20
DEFAULT_TOP_K = 15
MAX_TOP_K = 64
_TAIL_QUANTILE = 0.001

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class FeatureBins:
    """The fixed bins of one monitored value.

    Attributes:
        name: the feature name (``@`` names are reserved for the monitor's own blocks).
        kind: ``"numeric"`` (ordered bins between ``edges``) or ``"categorical"``.
        edges: numeric only; increasing bin edges (``len(edges) + 1`` bins).
        categories: categorical only; the top-k values (``len(categories) + 1`` bins).
    """

    name: str
    kind: Kind
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Number of bins, including underflow/overflow or "other"."""
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1

    def assign(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bin index of every value (numeric: NaN refused; categorical: compared as text)."""
        if self.kind == "numeric":
            array = np.asarray(values, dtype=np.float64)
            if np.isnan(array).any():
                raise InvalidInput(
                    f"feature {self.name!r} holds NaN; expected finite numbers or ±inf. "
                    "Impute or drop missing values before binning."
                )
            return np.searchsorted(np.asarray(self.edges), array, side="right").astype(np.int64)
        lookup = {value: index for index, value in enumerate(self.categories)}
        other = len(self.categories)
        return np.fromiter(
            (lookup.get(str(v), other) for v in np.asarray(values).ravel()), dtype=np.int64
        )

    def count(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Counts per bin of ``values`` (length ``size``)."""
        return np.bincount(self.assign(values), minlength=self.size).astype(np.int64)

    def points(self) -> npt.NDArray[np.float64]:
        """Where each numeric bin's mass sits: inner midpoints, tails half a width out."""
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.size < 2:
            width = 1.0
            mid = np.empty(0)
        else:
            mid = (edges[:-1] + edges[1:]) / 2
            width = float(np.median(np.diff(edges)))
        first = edges[0] if edges.size else 0.0
        last = edges[-1] if edges.size else 0.0
        return np.concatenate([[first - width / 2], mid, [last + width / 2]])

    def to_dict(self) -> dict[str, object]:
        if self.kind == "numeric":
            return {"name": self.name, "kind": "numeric", "edges": list(self.edges)}
        return {"name": self.name, "kind": "categorical", "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> FeatureBins:
        kind = data.get("kind")
        name = str(data.get("name", ""))
        if kind == "numeric":
            edges = tuple(float(e) for e in data.get("edges", ()))  # type: ignore[attr-defined]
            if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
                raise InvalidInput(f"bins of {name!r}: edges must be non-empty and increasing")
            return cls(name, "numeric", edges=edges)
        if kind == "categorical":
            categories = tuple(str(c) for c in data.get("categories", ()))  # type: ignore[attr-defined]
            return cls(name, "categorical", categories=categories)
        raise InvalidInput(
            f"bins of {name!r}: kind must be 'numeric' or 'categorical'; got {kind!r}"
        )


def numeric_bins(name: str, reference: npt.ArrayLike, bins: int = DEFAULT_BINS) -> FeatureBins:
    """Bins with edges at the reference's quantiles (``bins`` inner bins before deduplication).

    Raises:
        InvalidInput: ``bins`` outside [16, 32], or a reference with no finite value.
    """
    if not MIN_BINS <= bins <= MAX_BINS:
        raise InvalidInput(f"bins must be in [{MIN_BINS}, {MAX_BINS}]; got {bins}.")
    values = np.asarray(reference, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InvalidInput(f"feature {name!r} has no finite reference value to take edges from.")
    levels = np.concatenate([[_TAIL_QUANTILE], np.arange(1, bins) / bins, [1 - _TAIL_QUANTILE]])
    edges = np.unique(np.quantile(values, levels))
    return FeatureBins(name, "numeric", edges=tuple(float(e) for e in edges))


def categorical_bins(
    name: str, reference: npt.ArrayLike, top_k: int = DEFAULT_TOP_K
) -> FeatureBins:
    """Bins for the reference's ``top_k`` most frequent values (ties by value), then "other"."""
    if not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(f"top_k must be in [1, {MAX_TOP_K}]; got {top_k}.")
    text = np.asarray([str(v) for v in np.asarray(reference).ravel()])
    values, counts = np.unique(text, return_counts=True)
    order = sorted(range(values.size), key=lambda i: (-counts[i], values[i]))[:top_k]
    return FeatureBins(name, "categorical", categories=tuple(str(values[i]) for i in order))
