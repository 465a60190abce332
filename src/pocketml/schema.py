"""ModelSchema: what a model takes and gives, shipped as ``schema.json`` with every model.

A schema names each input (dtype, shape with a dynamic batch axis, layout, the raw value
range, and the normalization a client must apply), each output (probabilities or logits,
with class labels), and the preprocessing steps in order. Devices read it to prepare inputs
exactly as training did; the server reads it to validate cloud-inference requests.

The JSON carries ``format_version``; loading rejects a malformed schema with a
``SchemaError`` whose message names the offending field.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from pocketml.bounds import Bounded, FiniteFloat, JsonObject, Text
from pocketml.errors import InvalidInput, SchemaError

__all__ = [
    "FORMAT_VERSION",
    "InputSpec",
    "ModelSchema",
    "Normalization",
    "OutputSpec",
    "PreprocessStep",
    "describe_validation_error",
]

FORMAT_VERSION = 1
_DTYPES = ("float32", "float16", "uint8", "int8", "int32", "int64")
_LAYOUTS = ("NCHW", "NHWC", "NC")
MAX_AXIS = 1 << 20
MAX_SAMPLE_VALUES = 1 << 24
_DTYPE_LIMITS = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(2**31), 2**31 - 1)}
_DTYPE_LIMITS["int64"] = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_NUMBER_TYPES = frozenset({int, float})


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic ValidationError into one sentence per bad field."""
    parts = []
    for error in exc.errors():
        location = ".".join(
            f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]
        ).replace(".[", "[")
        field = f"{prefix}{location}" if location else prefix.rstrip(".") or "value"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"field '{field}': {message}")
    return "; ".join(parts)


class _Strict(Bounded):
    model_config = ConfigDict(extra="forbid", frozen=True)


_Name = Annotated[Text, Field(min_length=1, max_length=128)]
_Axis = Annotated[int, Field(ge=1, le=MAX_AXIS)]


class Normalization(_Strict):
    """``y = (x * scale - mean[c]) / std[c]``, per channel (or per feature for tables)."""

    scale: FiniteFloat = Field(1.0, description="Multiplier applied to raw values first.")
    mean: list[FiniteFloat] = Field(default_factory=lambda: [0.0], max_length=4096)
    std: list[FiniteFloat] = Field(default_factory=lambda: [1.0], max_length=4096)

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if len(self.mean) != len(self.std):
            raise ValueError(
                f"mean and std need the same length; got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError("every std must be > 0")
        return self


class InputSpec(_Strict):
    """One model input. ``shape[0]`` is the batch axis and must be ``None`` (dynamic)."""

    name: _Name
    dtype: Literal["float32", "float16", "uint8", "int8", "int32", "int64"] = "float32"
    shape: list[_Axis | None] = Field(
        max_length=8, description=f"Axis sizes; each in [1, {MAX_AXIS}], the first null."
    )
    layout: Literal["NCHW", "NHWC", "NCL", "NC"] = "NCHW"
    value_range: tuple[FiniteFloat, FiniteFloat] | None = Field(
        None, description="Range of raw values before normalization, e.g. (0, 255)."
    )
    normalization: Normalization | None = None

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, shape: list[int | None]) -> list[int | None]:
        if len(shape) < 2:
            raise ValueError(f"needs a batch axis and at least one more axis; got {shape}")
        if shape[0] is not None:
            raise ValueError(f"the first (batch) axis must be null (dynamic); got {shape[0]}")
        if any(d is None or d <= 0 for d in shape[1:]):
            raise ValueError(f"axes after the batch axis must be positive ints; got {shape}")
        if math.prod(d for d in shape[1:] if d is not None) > MAX_SAMPLE_VALUES:
            raise ValueError(f"one sample may hold at most {MAX_SAMPLE_VALUES} values; got {shape}")
        return shape

    @model_validator(mode="after")
    def _check_layout(self) -> InputSpec:
        rank = {"NCHW": 4, "NHWC": 4, "NCL": 3, "NC": 2}[self.layout]
        if len(self.shape) != rank:
            raise ValueError(
                f"layout {self.layout} needs a shape of rank {rank}; got {len(self.shape)}"
            )
        if self.normalization is not None:
            channels = self.channels
            n = len(self.normalization.mean)
            if n not in (1, channels):
                raise ValueError(
                    f"normalization has {n} mean/std values; expected 1 or {channels} "
                    f"(the {self.layout} channel count)"
                )
        if self.value_range is not None and self.value_range[0] > self.value_range[1]:
            raise ValueError(f"value_range must be (low, high); got {self.value_range}")
        return self

    @property
    def channels(self) -> int:
        """The channel count (the feature count for ``NC``)."""
        index = {"NCHW": 1, "NHWC": 3, "NCL": 1, "NC": 1}[self.layout]
        value = self.shape[index]
        assert value is not None
        return value

    @functools.cached_property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the shape without its batch axis; computed once)."""
        return tuple(int(d) for d in self.shape[1:] if d is not None)


class OutputSpec(_Strict):
    """One model output: class probabilities or logits, with one label per class."""

    name: _Name
    kind: Literal["probabilities", "logits"] = "probabilities"
    labels: list[Annotated[Text, Field(max_length=256)]] = Field(min_length=1, max_length=100_000)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        if any(not label for label in labels):
            raise ValueError("labels must be non-empty strings")
        return labels


class PreprocessStep(_Strict):
    """A documented step a client performs before the model (in this order)."""

    op: Literal["resize", "grayscale", "to_float", "normalize", "transpose"]
    params: JsonObject = Field(default_factory=dict)


class ModelSchema(_Strict):
    """The contract of a model's inputs and outputs; JSON-serialisable and versioned."""

    format_version: int = FORMAT_VERSION
    name: _Name
    task: Literal["classification"] = "classification"
    inputs: list[InputSpec] = Field(min_length=1, max_length=64)
    outputs: list[OutputSpec] = Field(min_length=1, max_length=64)
    preprocessing: list[PreprocessStep] = Field(default_factory=list, max_length=64)

    @field_validator("format_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(
                f"unsupported schema format_version {value}; this pocketml reads "
                f"{FORMAT_VERSION}. Upgrade pocketml or re-export the schema."
            )
        return value

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        """Indented JSON text, stable key order."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> ModelSchema:
        """Parse a dict; raise SchemaError naming the first bad fields."""
        if not isinstance(data, dict):
            raise SchemaError(f"a schema must be a JSON object; got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SchemaError(f"invalid model schema: {describe_validation_error(exc)}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSchema:
        """Parse JSON text; raise SchemaError for bad JSON or bad fields."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"schema is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    # -- use ---------------------------------------------------------------------------

    @property
    def input(self) -> InputSpec:
        """The first (for pocketml models: the only) input."""
        return self.inputs[0]

    @property
    def labels(self) -> list[str]:
        """Class labels of the first output."""
        return self.outputs[0].labels

    def check_batch(self, batch: Any) -> np.ndarray:
        """Check a batch against the first input and return it as a float32 array.

        Every value must be a number (booleans, strings and nulls are refused) that the
        input's dtype can hold: finite, inside the dtype's range, and whole for integer
        dtypes.

        Raises:
            InvalidInput: wrong rank or shape, non-numeric values, NaN or infinity, a
                value the input's dtype cannot hold. The message names the input.
        """
        spec = self.input
        if isinstance(batch, np.ndarray):
            if batch.dtype.kind not in "fiu":
                raise InvalidInput(
                    f"input '{spec.name}' must hold numbers; got an array of {batch.dtype}"
                )
        else:
            _check_numbers(batch, spec.name)
        try:
            array = np.asarray(batch, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(
                f"input '{spec.name}' must be a nested list of numbers with equal lengths "
                f"per axis: {exc}"
            ) from exc
        if array.shape[1:] != spec.sample_shape:
            if array.shape == spec.sample_shape:
                array = array[np.newaxis]
            else:
                expected = ", ".join(str(d) for d in spec.sample_shape)
                raise InvalidInput(
                    f"input '{spec.name}' must have shape (N, {expected}); got {tuple(array.shape)}"
                )
        if not np.isfinite(array).all():
            raise InvalidInput(f"input '{spec.name}' contains NaN or infinite values")
        _check_dtype_range(array, spec)
        return array.astype(np.float32)

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """Apply the input's normalization to raw values (what a client does on device)."""
        spec = self.input
        array = np.asarray(raw, dtype=np.float32)
        norm = spec.normalization
        if norm is None:
            return array
        mean = np.asarray(norm.mean, dtype=np.float32)
        std = np.asarray(norm.std, dtype=np.float32)
        if spec.layout == "NCHW" and mean.size > 1:
            mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
        out: np.ndarray = (array * np.float32(norm.scale) - mean) / std
        return out.astype(np.float32)


def _check_numbers(batch: Any, name: str) -> None:
    """Raise InvalidInput unless ``batch`` is nested lists whose leaves are all numbers."""
    if not isinstance(batch, list):
        raise InvalidInput(
            f"input '{name}' must be a nested list of numbers; got {type(batch).__name__}"
        )
    stack = [batch]
    while stack:
        items = stack.pop()
        if not items:
            continue
        if isinstance(items[0], list):
            if not all(type(item) is list for item in items):
                raise InvalidInput(f"input '{name}' mixes lists and values on one axis")
            stack.extend(items)
            continue
        kinds = set(map(type, items))
        if not kinds <= _NUMBER_TYPES:
            given = ", ".join(sorted(kind.__name__ for kind in kinds - _NUMBER_TYPES))
            raise InvalidInput(
                f"input '{name}' must hold only numbers (int or float); got {given}. "
                "Send true/false as 1/0."
            )


def _check_dtype_range(array: np.ndarray, spec: InputSpec) -> None:
    """Raise InvalidInput when a value does not fit the input's dtype."""
    if spec.dtype in ("float32", "float16"):
        limit = _FLOAT32_MAX if spec.dtype == "float32" else _FLOAT16_MAX
        if array.size and float(np.abs(array).max()) > limit:
            raise InvalidInput(
                f"input '{spec.name}' has values beyond the {spec.dtype} range (|x| <= {limit:.4g})"
            )
        return
    low, high = _DTYPE_LIMITS[spec.dtype]
    if array.size and (float(array.min()) < low or float(array.max()) > high):
        raise InvalidInput(f"input '{spec.name}' ({spec.dtype}) takes values in [{low}, {high}]")
    if not np.array_equal(array, np.round(array)):
        raise InvalidInput(f"input '{spec.name}' ({spec.dtype}) takes whole numbers only")
