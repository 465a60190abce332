"""Pydantic models of the sample routes, for the OpenAPI document.

The device route parses its body with ``pocketml.protocol.parse_sample_batch`` (one home of
the wire format: ``SAMPLE_BATCH_FIELDS`` / ``SAMPLE_FIELDS``); ``SampleBatchRequest`` only
documents it, and tests/loop check the two name the same fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from pocketml.protocol import DEVICE_ID_PATTERN, MAX_SAMPLES_PER_BATCH

__all__ = [
    "ForgetPublic",
    "SampleBatchRequest",
    "SampleInputWire",
    "SampleListPublic",
    "SamplePublic",
    "SampleWire",
    "SamplesAccepted",
]

_HEX32 = r"^[0-9a-f]{32}$"


class SampleInputWire(BaseModel):
    """A tensor as the model saw it (normalized)."""

    shape: list[int] = Field(description="Sample shape, or [1, *sample shape].")
    dtype: Literal["float32"]
    data: str = Field(description="base64 of the little-endian float32 values.")


class SampleWire(BaseModel):
    """One consented sample."""

    sample_id: str = Field(pattern=_HEX32, description="uuid4 hex: the idempotency key.")
    model: str = Field(min_length=1, max_length=64)
    version: int = Field(ge=1)
    prediction_id: str | None = Field(None, max_length=128)
    device_class: str = Field(max_length=32)
    input: SampleInputWire
    predicted: str = Field(max_length=256)
    confidence: float = Field(ge=0, le=1)
    label: str | None = Field(None, max_length=256)
    captured_at: float = Field(ge=0, description="Unix seconds on the device's clock.")


class SampleBatchRequest(BaseModel):
    """``POST /v1/samples`` (documentation: the route parses the body with the protocol)."""

    batch_id: str = Field(pattern=_HEX32)
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    samples: list[SampleWire] = Field(min_length=1, max_length=MAX_SAMPLES_PER_BATCH)


class SamplesAccepted(BaseModel):
    """What a batch stored."""

    accepted: int = Field(description="Samples stored by this request.")
    duplicates: int = Field(description="Samples whose sample_id was stored before.")


class ForgetPublic(BaseModel):
    """What forgetting a device deleted on the server (row counts) and its audit row."""

    device_id: str
    samples: int
    chunks: int
    feedback: int
    telemetry_chunks: int
    telemetry_batches: int
    audit_id: int
    federated_participants: int = Field(
        0, description="The device's rows in federated rounds (ids, keys, update hashes)."
    )


class SamplePublic(BaseModel):
    """One index row of a sample (no tensor)."""

    sample_id: str
    model: str
    version: int
    device_id: str
    device_class: str
    prediction_id: str | None
    predicted: str
    confidence: float
    label: str | None = Field(description="Its own label, else the feedback label.")
    captured_at: float
    received_at: float
    bytes: int


class SampleListPublic(BaseModel):
    """A page of a model's samples and the labelled/unlabelled counts per device class."""

    model: str
    items: list[SamplePublic]
    next_after: int | None = Field(description="Pass as `after` for the next page.")
    counts: dict[str, dict[str, int]]
