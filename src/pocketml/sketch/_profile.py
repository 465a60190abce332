"""The reference profile of a version: fixed bins, reference counts, projections, calibration.

Built once from the training (or a held-out reference) split with ``build_profile``; it is
what every device bins against and what every window is tested against. It holds:

- ``bins``: one ``FeatureBins`` per monitored feature;
- ``projection``: a fixed PCA of the standardised numeric features, so a change of the
  *joint* distribution that keeps every marginal (a correlation flip) still moves the
  marginal of some projection. The top half of the components and the bottom half are
  kept: breaking a strong correlation changes the variance of the smallest component the
  most (0.2 -> 1.0 for rho 0.8 -> 0), growing one changes the largest. Each projection is
  binned like a feature (block ``@pc1`` ...);
- ``reference``: the reference split's sketch (every block, including ``@prediction`` and
  ``@confidence``), so the reference is a sample with a size, never "exact frequencies";
- ``scales``: the reference standard deviation of each ordered block (normalised
  Wasserstein distance is in units of it);
- ``calibration_correct``: per confidence bin, how many reference predictions were right
  (with ``@confidence`` as totals, the calibration table of the label-free estimate).

JSON round-trips with ``to_dict`` / ``ReferenceProfile.from_dict``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pocketml.errors import InvalidInput
from pocketml.sketch._bins import (
    DEFAULT_BINS,
    DEFAULT_TOP_K,
    FeatureBins,
    categorical_bins,
    numeric_bins,
)
from pocketml.sketch._sketch import (
    CONFIDENCE_BINS,
    CONFIDENCE_BLOCK,
    PREDICTION_BLOCK,
    Sketch,
    SketchLayout,
    confidence_counts,
)

__all__ = ["PROFILE_FORMAT", "Projection", "ReferenceProfile", "build_profile"]

PROFILE_FORMAT = 1
PROJECTION_PREFIX = "@pc"
MAX_PROJECTIONS = 8


@dataclass(frozen=True)
class Projection:
    """A fixed linear map of standardised numeric features: ``((x - mean) / scale) @ matrix.T``."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    matrix: tuple[tuple[float, ...], ...]

    def apply(self, columns: Mapping[str, npt.ArrayLike]) -> npt.NDArray[np.float64]:
        """Projected values, one column per component."""
        data = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in self.columns])
        standard = (data - np.asarray(self.mean)) / np.asarray(self.scale)
        return standard @ np.asarray(self.matrix).T


@dataclass(frozen=True)
class ReferenceProfile:
    """Bins, reference counts and what the detectors and the accuracy estimate need."""

    bins: tuple[FeatureBins, ...]
    projection: Projection | None
    projection_bins: tuple[FeatureBins, ...]
    num_classes: int
    reference: Sketch
    scales: Mapping[str, float]
    calibration_correct: tuple[int, ...] | None

    @property
    def layout(self) -> SketchLayout:
        return self.reference.layout

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bins)

    @property
    def projection_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.projection_bins)

    def bins_of(self, name: str) -> FeatureBins | None:
        """The bins of a feature or projection block (None for @prediction/@confidence)."""
        for item in (*self.bins, *self.projection_bins):
            if item.name == name:
                return item
        return None

    def sketch(
        self,
        columns: Mapping[str, npt.ArrayLike],
        predicted_class: npt.ArrayLike | None = None,
        confidence: npt.ArrayLike | None = None,
    ) -> Sketch:
        """Bin raw rows into a sketch of this profile's layout (what a device does).

        Raises:
            InvalidInput: a missing feature column, columns of different lengths, a missing
                prediction/confidence the layout has, or values out of range.
        """
        missing = [b.name for b in self.bins if b.name not in columns]
        if missing:
            raise InvalidInput(f"rows lack the monitored features {missing}; send every one.")
        lengths = {len(np.asarray(columns[b.name]).reshape(-1)) for b in self.bins}
        if len(lengths) > 1:
            raise InvalidInput(f"feature columns must have one length; got {sorted(lengths)}.")
        n = lengths.pop() if lengths else 0
        parts = [b.count(columns[b.name]) for b in self.bins]
        if self.projection is not None:
            projected = self.projection.apply(columns)
            parts += [b.count(projected[:, i]) for i, b in enumerate(self.projection_bins)]
        names = set(self.layout.names)
        if PREDICTION_BLOCK in names:
            parts.append(_class_counts(predicted_class, self.num_classes, n))
        if CONFIDENCE_BLOCK in names:
            if confidence is None or len(np.asarray(confidence)) != n:
                raise InvalidInput(f"confidence must hold one value per row ({n}).")
            parts.append(confidence_counts(confidence))
        return Sketch(self.layout, n, np.concatenate(parts).astype(np.int64))

    def to_dict(self) -> dict[str, Any]:
        projection = None
        if self.projection is not None:
            p = self.projection
            projection = {
                "columns": list(p.columns),
                "mean": list(p.mean),
                "scale": list(p.scale),
                "matrix": [list(row) for row in p.matrix],
                "bins": [b.to_dict() for b in self.projection_bins],
            }
        return {
            "format": PROFILE_FORMAT,
            "bins": [b.to_dict() for b in self.bins],
            "projection": projection,
            "num_classes": self.num_classes,
            "blocks": list(self.layout.names),
            "reference": self.reference.to_dict(),
            "scales": dict(self.scales),
            "calibration_correct": (
                None if self.calibration_correct is None else list(self.calibration_correct)
            ),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """Read a profile written by ``to_dict``.

        Raises:
            InvalidInput: another format, a missing or mistyped part, or a profile whose
                counts do not fit its bins (never a bare KeyError or TypeError: every
                reader, the push route, intake and the device, gets the same answer).
        """
        try:
            return cls._from_dict(data)
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise InvalidInput(
                f"not a pocketml reference profile ({type(exc).__name__}: {exc}); use the "
                "profile.json that `pocketml build` wrote."
            ) from exc

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        from pocketml.sketch._sketch import parse_sketch

        if data.get("format") != PROFILE_FORMAT:
            raise InvalidInput(
                f"profile format must be {PROFILE_FORMAT}; got {data.get('format')!r}."
            )
        bins = tuple(FeatureBins.from_dict(b) for b in data["bins"])
        raw = data.get("projection")
        projection: Projection | None = None
        projection_bins: tuple[FeatureBins, ...] = ()
        if raw is not None:
            projection = Projection(
                tuple(raw["columns"]),
                tuple(float(x) for x in raw["mean"]),
                tuple(float(x) for x in raw["scale"]),
                tuple(tuple(float(x) for x in row) for row in raw["matrix"]),
            )
            projection_bins = tuple(FeatureBins.from_dict(b) for b in raw["bins"])
        num_classes = int(data["num_classes"])
        names = tuple(str(x) for x in data["blocks"])
        layout = _layout(bins, projection_bins, num_classes, CONFIDENCE_BLOCK in names)
        if layout.names != names:
            raise InvalidInput(f"profile blocks {list(names)} do not match its bins.")
        calibration = data.get("calibration_correct")
        return cls(
            bins=bins,
            projection=projection,
            projection_bins=projection_bins,
            num_classes=num_classes,
            reference=parse_sketch(data["reference"], layout),
            scales={str(k): float(v) for k, v in data["scales"].items()},
            calibration_correct=None if calibration is None else tuple(int(c) for c in calibration),
        )


def build_profile(
    columns: Mapping[str, npt.ArrayLike],
    *,
    categorical: Collection[str] = (),
    predicted_class: npt.ArrayLike | None = None,
    confidence: npt.ArrayLike | None = None,
    correct: npt.ArrayLike | None = None,
    num_classes: int = 0,
    bins: int = DEFAULT_BINS,
    top_k: int = DEFAULT_TOP_K,
    projections: int = 4,
) -> ReferenceProfile:
    """Build the reference profile of a version from its reference split, in one call.

    Args:
        columns: feature name -> 1-D array of reference values (numeric unless named in
            ``categorical``).
        categorical: names of the categorical features (top-k + "other").
        predicted_class, confidence, correct: the model's outputs on the reference rows and
            whether each prediction was right (``correct`` fills the calibration table).
        num_classes: number of classes when ``predicted_class`` is given.
        bins: inner bins per numeric feature, in [16, 32].
        top_k: categories kept per categorical feature.
        projections: PCA components monitored for joint drift (0 = none; needs >= 2
            numeric features).

    Raises:
        InvalidInput: a reserved ``@`` feature name, mismatched lengths, or bad options.
    """
    for name in columns:
        if not name or name.startswith("@"):
            raise InvalidInput(
                f"feature names must be non-empty and not start with '@'; got {name!r}."
            )
    unknown = sorted(set(categorical) - set(columns))
    if unknown:
        raise InvalidInput(f"categorical names {unknown} are not among the columns.")
    feature_bins = tuple(
        categorical_bins(name, values, top_k)
        if name in categorical
        else numeric_bins(name, values, bins)
        for name, values in columns.items()
    )
    scales = {b.name: _std(columns[b.name]) for b in feature_bins if b.kind == "numeric"}
    numeric = [b.name for b in feature_bins if b.kind == "numeric"]
    projection: Projection | None = None
    projection_bins: tuple[FeatureBins, ...] = ()
    if projections and len(numeric) >= 2:
        projection = _fit_projection(columns, numeric, projections)
        projected = projection.apply(columns)
        projection_bins = tuple(
            numeric_bins(f"{PROJECTION_PREFIX}{i + 1}", projected[:, i], bins)
            for i in range(projected.shape[1])
        )
        scales |= {b.name: _std(projected[:, i]) for i, b in enumerate(projection_bins)}
    if predicted_class is not None and num_classes < 2:
        raise InvalidInput(f"num_classes must be >= 2 with predicted_class; got {num_classes}.")
    has_confidence = confidence is not None
    layout = _layout(
        feature_bins,
        projection_bins,
        num_classes if predicted_class is not None else 0,
        has_confidence,
    )
    draft = ReferenceProfile(
        feature_bins,
        projection,
        projection_bins,
        num_classes if predicted_class is not None else 0,
        Sketch(layout, 0, np.zeros(layout.total, dtype=np.int64)),
        {},
        None,
    )
    # With a projection, the reference counts come from the odd rows and the PCA from the
    # even ones: directions fitted on the rows that also give the counts over-fit them
    # (the sample variance along a fitted direction is biased), which large windows then
    # detect as drift that is not there (measured: 6 % false alarms at 5,000 rows).
    rows = slice(1, None, 2) if projection is not None else slice(None)
    columns = {name: np.asarray(values)[rows] for name, values in columns.items()}
    if predicted_class is not None:
        predicted_class = np.asarray(predicted_class)[rows]
    if confidence is not None:
        confidence = np.asarray(confidence)[rows]
    if correct is not None:
        correct = np.asarray(correct)[rows]
    reference = draft.sketch(columns, predicted_class, confidence)
    calibration = None
    if has_confidence:
        midpoints = (np.arange(CONFIDENCE_BINS) + 0.5) / CONFIDENCE_BINS
        histogram = reference.block(CONFIDENCE_BLOCK)
        scales[CONFIDENCE_BLOCK] = _histogram_std(histogram, midpoints)
        if correct is not None:
            calibration = _calibration(confidence, correct)  # type: ignore[arg-type]
    return ReferenceProfile(
        feature_bins,
        projection,
        projection_bins,
        draft.num_classes,
        reference,
        scales,
        calibration,
    )


def _layout(
    bins: tuple[FeatureBins, ...],
    projection_bins: tuple[FeatureBins, ...],
    num_classes: int,
    has_confidence: bool,
) -> SketchLayout:
    names = [b.name for b in (*bins, *projection_bins)]
    sizes = [b.size for b in (*bins, *projection_bins)]
    if num_classes:
        names.append(PREDICTION_BLOCK)
        sizes.append(num_classes)
    if has_confidence:
        names.append(CONFIDENCE_BLOCK)
        sizes.append(CONFIDENCE_BINS)
    return SketchLayout(tuple(names), tuple(sizes))


def _fit_projection(
    columns: Mapping[str, npt.ArrayLike], numeric: list[str], wanted: int
) -> Projection:
    data = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in numeric])[::2]
    mean = data.mean(axis=0)
    scale = data.std(axis=0)
    scale[scale == 0] = 1.0
    _, _, vt = np.linalg.svd((data - mean) / scale, full_matrices=False)
    count = min(wanted, MAX_PROJECTIONS, vt.shape[0])
    top = (count + 1) // 2
    rows = (
        np.concatenate([vt[:top], vt[vt.shape[0] - (count - top) :]]) if count > top else vt[:top]
    )
    return Projection(
        tuple(numeric),
        tuple(float(x) for x in mean),
        tuple(float(x) for x in scale),
        tuple(tuple(float(x) for x in row) for row in rows),
    )


def _class_counts(
    predicted_class: npt.ArrayLike | None, num_classes: int, n: int
) -> npt.NDArray[np.int64]:
    if predicted_class is None:
        raise InvalidInput("predicted_class is required: the profile monitors predictions.")
    classes = np.asarray(predicted_class).astype(np.int64).reshape(-1)
    if classes.size != n or (classes.size and (classes.min() < 0 or classes.max() >= num_classes)):
        raise InvalidInput(
            f"predicted_class must hold {n} class indices in [0, {num_classes}); fix the rows."
        )
    return np.bincount(classes, minlength=num_classes).astype(np.int64)


def _calibration(confidence: npt.ArrayLike, correct: npt.ArrayLike) -> tuple[int, ...]:
    values = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct).astype(bool).reshape(-1)
    if right.size != values.size:
        raise InvalidInput(f"correct must hold one flag per row ({values.size}).")
    index = np.minimum((values * CONFIDENCE_BINS).astype(np.int64), CONFIDENCE_BINS - 1)
    counts = np.bincount(index[right], minlength=CONFIDENCE_BINS)
    return tuple(int(c) for c in counts)


def _std(values: npt.ArrayLike) -> float:
    array = np.asarray(values, dtype=np.float64)
    std = float(np.std(array[np.isfinite(array)]))
    return std if std > 0 else 1.0


def _histogram_std(counts: npt.NDArray[np.int64], points: npt.NDArray[np.float64]) -> float:
    total = counts.sum()
    if total == 0:
        return 1.0
    mean = float((counts * points).sum() / total)
    std = float(np.sqrt((counts * (points - mean) ** 2).sum() / total))
    return std if std > 0 else 1.0
