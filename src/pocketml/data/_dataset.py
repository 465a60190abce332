"""The Dataset value: features, labels, class names, deterministic splits, fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from pocketml.errors import InvalidInput

__all__ = ["LAYOUT_RANKS", "Dataset", "Splits"]

_FINGERPRINT_VERSION = 1
# Each layout and the rank of its feature array (batch axis included).
LAYOUT_RANKS = {"NC": 2, "NCL": 3, "NCHW": 4}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset held in memory.

    Attributes:
        name: a short name ("digits", a file stem).
        features: float32 array (N, ...): (N, C, H, W) for images, (N, C, L) for sequences
            and sensor windows (C channels of L time steps), (N, F) for tables.
        labels: int64 array (N,) of class indices into ``class_names``.
        class_names: one name per class.
        layout: "NCHW" for images, "NCL" for sequences, "NC" for tables.
        feature_names: column names for tables.
        value_range: the range raw feature values live in, when known (e.g. (0, 16)).
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    layout: str = "NCHW"
    feature_names: tuple[str, ...] | None = None
    value_range: tuple[float, float] | None = None
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        features = np.ascontiguousarray(self.features, dtype=np.float32)
        labels = np.ascontiguousarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if features.ndim < 2:
            raise InvalidInput(f"features need shape (N, ...); got {features.shape}")
        if labels.shape != (features.shape[0],):
            raise InvalidInput(
                f"labels need shape ({features.shape[0]},) to match the features; "
                f"got {labels.shape}"
            )
        if len(self.class_names) < 2:
            raise InvalidInput(
                f"a classification dataset needs >= 2 classes; got {self.class_names}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise InvalidInput(
                f"labels must be class indices in [0, {len(self.class_names) - 1}]; "
                f"got values in [{labels.min()}, {labels.max()}]"
            )
        expected_rank = LAYOUT_RANKS.get(self.layout)
        if expected_rank is None or features.ndim != expected_rank:
            raise InvalidInput(
                f"layout {self.layout!r} does not fit features of shape {features.shape}; "
                "use 'NCHW' for (N, C, H, W) images, 'NCL' for (N, C, L) sequences or "
                "'NC' for (N, F) tables"
            )

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(int(d) for d in self.features.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @cached_property
    def fingerprint(self) -> str:
        """Content id: sha256 over a canonical header, the features and the labels.

        The same data gives the same id on any machine (little-endian float32/int64,
        C order); changing one value, a label, a class name or the shape gives another.
        """
        header = {
            "v": _FINGERPRINT_VERSION,
            "shape": list(self.features.shape),
            "layout": self.layout,
            "classes": list(self.class_names),
            "feature_names": list(self.feature_names) if self.feature_names else None,
        }
        digest = hashlib.sha256()
        digest.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
        digest.update(self.features.astype("<f4", copy=False).tobytes(order="C"))
        digest.update(self.labels.astype("<i8", copy=False).tobytes(order="C"))
        return "sha256:" + digest.hexdigest()

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        """A new Dataset with the rows at ``indices``."""
        return Dataset(
            name=name or self.name,
            features=self.features[indices],
            labels=self.labels[indices],
            class_names=self.class_names,
            layout=self.layout,
            feature_names=self.feature_names,
            value_range=self.value_range,
        )

    def with_features(self, features: np.ndarray, name: str | None = None) -> Dataset:
        """The same labels with new features (e.g. augmented)."""
        return Dataset(
            name=name or self.name,
            features=features,
            labels=self.labels,
            class_names=self.class_names,
            layout=self.layout,
            feature_names=self.feature_names,
            value_range=self.value_range,
        )

    def split(self, *, validation: float = 0.15, test: float = 0.15, seed: int = 0) -> Splits:
        """Stratified train/validation/test split; the same seed gives the same split.

        Raises:
            InvalidInput: fractions outside [0, 1) or leaving no training data.
        """
        for label, value in (("validation", validation), ("test", test)):
            if not 0.0 <= value < 1.0:
                raise InvalidInput(f"{label} fraction must be in [0, 1); got {value}")
        if validation + test >= 1.0:
            raise InvalidInput(
                f"validation + test must leave training data; got {validation} + {test}"
            )
        rng = np.random.default_rng(seed)
        parts: dict[str, list[np.ndarray]] = {"train": [], "validation": [], "test": []}
        for cls in range(self.num_classes):
            idx = np.flatnonzero(self.labels == cls)
            idx = idx[rng.permutation(idx.size)]
            n_test = round(idx.size * test)
            n_val = round(idx.size * validation)
            parts["test"].append(idx[:n_test])
            parts["validation"].append(idx[n_test : n_test + n_val])
            parts["train"].append(idx[n_test + n_val :])
        subsets = {}
        for part, chunks in parts.items():
            indices = np.sort(np.concatenate(chunks)) if chunks else np.array([], dtype=np.int64)
            subsets[part] = self.subset(indices, name=f"{self.name}:{part}")
        return Splits(subsets["train"], subsets["validation"], subsets["test"], seed)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test parts of one dataset, with the seed that made them."""

    train: Dataset
    validation: Dataset
    test: Dataset
    seed: int

    def sizes(self) -> dict[str, int]:
        """Row counts per part."""
        return {
            "train": len(self.train),
            "validation": len(self.validation),
            "test": len(self.test),
        }
