"""The values the sample store returns, and the inverse of a schema's normalization."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from pocketml.schema import ModelSchema

__all__ = [
    "ForgetReport",
    "IngestResult",
    "SampleInfo",
    "SamplePage",
    "invert_normalization",
]


@dataclass(frozen=True)
class IngestResult:
    """What one batch did: samples stored now, samples already stored before."""

    accepted: int
    duplicates: int


@dataclass(frozen=True)
class SampleInfo:
    """One index row (no tensor)."""

    sample_id: str
    model: str
    version: int
    device_id: str
    device_class: str
    prediction_id: str | None
    predicted: str
    confidence: float
    label: str | None
    captured_at: float
    received_at: datetime
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        out = dict(self.__dict__)
        out["received_at"] = self.received_at.timestamp()
        return out


@dataclass(frozen=True)
class SamplePage:
    """A page of index rows, the cursor of the next page, and labelled/unlabelled counts
    per device class over the whole model (not just the page)."""

    items: tuple[SampleInfo, ...]
    next_after: int | None
    counts: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class ForgetReport:
    """What ``forget_device`` deleted (row counts) and the audit row that records it."""

    device_id: str
    samples: int
    chunks: int
    feedback: int
    telemetry_chunks: int
    telemetry_batches: int
    audit_id: int
    federated_participants: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


def _channel_constants(schema: ModelSchema) -> tuple[np.ndarray, np.ndarray, float] | None:
    """(mean, std, scale) shaped as the device applies them (``device/_model.py``)."""
    norm = schema.input.normalization
    if norm is None:
        return None
    mean = np.asarray(norm.mean, dtype=np.float64)
    std = np.asarray(norm.std, dtype=np.float64)
    if schema.input.layout == "NCHW" and mean.size > 1:
        mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
    return mean, std, float(norm.scale)


def invert_normalization(schema: ModelSchema, normalized: np.ndarray) -> np.ndarray:
    """Raw dataset units of samples the model saw: ``x = (y * std + mean) / scale``.

    Args:
        schema: the model's schema (its input normalization).
        normalized: float (N, *sample_shape).

    Returns:
        float32 of the same shape.
    """
    constants = _channel_constants(schema)
    if constants is None:
        return np.asarray(normalized, dtype=np.float32)
    mean, std, scale = constants
    raw = (np.asarray(normalized, dtype=np.float64) * std + mean) / scale
    return raw.astype(np.float32)
