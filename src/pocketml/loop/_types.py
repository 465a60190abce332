"""The values the loop's parts hand each other (one home: samples, trust, gate and jobs).

``LabelledSamples`` is what the sample store gives training and the gate: consented,
labelled samples of one model, one row per sample, with who sent it. Features are in the
dataset's raw units (the version schema's normalization inverted), so they concatenate with
the recipe's training data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pocketml.data import Dataset
from pocketml.errors import InvalidInput

__all__ = ["LabelledSamples"]


@dataclass(frozen=True, eq=False)
class LabelledSamples:
    """Labelled samples of one model.

    Attributes:
        model: the model's name.
        class_names: the label vocabulary ``labels`` indexes into (the schema's labels).
        features: float32 (N, *sample_shape), raw dataset units.
        labels: int64 (N,), the user's label (feedback) as an index into ``class_names``.
        predicted: int64 (N,), what the device's model answered.
        confidence: float32 (N,), that answer's confidence.
        sample_id: (N,) str, unique per sample (the device's UUID).
        device_id: (N,) str, the sending device.
        device_class: (N,) str.
        version: int64 (N,), the model version that scored the sample.
        captured_at: float64 (N,), unix seconds on the device's clock.
    """

    model: str
    class_names: tuple[str, ...]
    features: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    sample_id: np.ndarray
    device_id: np.ndarray
    device_class: np.ndarray
    version: np.ndarray
    captured_at: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in (
            "features",
            "predicted",
            "confidence",
            "sample_id",
            "device_id",
            "device_class",
            "version",
            "captured_at",
        ):
            if len(getattr(self, name)) != n:
                raise InvalidInput(
                    f"LabelledSamples.{name} has {len(getattr(self, name))} rows; labels {n}"
                )

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, mask: np.ndarray) -> LabelledSamples:
        """The rows where ``mask`` (bool (N,) or int indices) selects."""
        index = np.asarray(mask)
        return LabelledSamples(
            self.model,
            self.class_names,
            self.features[index],
            self.labels[index],
            self.predicted[index],
            self.confidence[index],
            self.sample_id[index],
            self.device_id[index],
            self.device_class[index],
            self.version[index],
            self.captured_at[index],
        )

    def fingerprint(self) -> str:
        """sha256 over the sorted sample ids, features and labels (order-independent)."""
        order = np.argsort(self.sample_id.astype(str), kind="stable")
        digest = hashlib.sha256()
        for i in order:
            digest.update(str(self.sample_id[i]).encode())
            digest.update(np.ascontiguousarray(self.features[i], dtype=np.float32).tobytes())
            digest.update(int(self.labels[i]).to_bytes(8, "little", signed=True))
        return digest.hexdigest()

    def to_dataset(self, name: str = "samples", *, layout: str = "NCHW") -> Dataset:
        """The samples as a ``Dataset`` (features and labels; provenance dropped)."""
        return Dataset(name, self.features, self.labels, self.class_names, layout=layout)
