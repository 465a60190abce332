"""ModelSchema: what a model takes and gives, shipped as ``schema.json`` with every model.

A schema names each input (dtype, shape with a dynamic batch axis, layout, the raw value
range, and the normalization a client must apply), each output (probabilities or logits,
with class labels), and the preprocessing steps in order. Devices read it to prepare inputs
exactly as training did; the server reads it to validate cloud-inference requests.

The JSON carries ``format_version``; loading rejects a malformed schema with a
``SchemaError`` whose message names the offending field.

The classes are frozen standard-library dataclasses that validate themselves in
``__post_init__``: the device SDK reads schemas without pydantic (``pip install
'pocketml[device]'`` does not install it). Pydantic accepts them as field types: a server
model with a ``ModelSchema`` field validates through the same checks (a ``ValueError``
becomes a 422 naming the field) and shows their structure in the OpenAPI document.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from pocketml.errors import InvalidInput, SchemaError
from pocketml.limits import check_text, check_value

if TYPE_CHECKING:
    from pydantic import ValidationError

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
# Each input layout: its rank and the axis that holds the channels (features for NC).
_LAYOUT_RANK = {"NCHW": 4, "NHWC": 4, "NCL": 3, "NC": 2}
_CHANNEL_AXIS = {"NCHW": 1, "NHWC": 3, "NCL": 1, "NC": 1}
_LAYOUTS = tuple(_LAYOUT_RANK)
_KINDS = ("probabilities", "logits")
_OPS = ("resize", "grayscale", "to_float", "normalize", "transpose")
MAX_AXIS = 1 << 20
MAX_SAMPLE_VALUES = 1 << 24
_DTYPE_LIMITS = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(2**31), 2**31 - 1)}
_DTYPE_LIMITS["int64"] = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_NUMBER_TYPES = frozenset({int, float})
# pydantic reads this when a server model embeds a schema class: unknown fields are refused.
_PYDANTIC_CONFIG = {"extra": "forbid"}


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """Turn a pydantic ValidationError into one sentence per bad field."""
    parts = []
    for error in exc.errors():
        location = ".".join(
            f"[{part}]" if isinstance(part, int) else str(part) for part in error["loc"]
        ).replace(".[", "[")
        field_name = f"{prefix}{location}" if location else prefix.rstrip(".") or "value"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"field '{field_name}': {message}")
    return "; ".join(parts)


class _FieldError(ValueError):
    """A bad field: ``where`` is its path inside the object being built."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"field '{where}': {message}" if where else message)
        self.where, self.message = where, message

    def inside(self, prefix: str) -> _FieldError:
        """The same error, its path prefixed (``inputs[0]`` + ``shape``)."""
        where = f"{prefix}.{self.where}" if self.where else prefix
        return _FieldError(where.replace(".[", "["), self.message)


# -- field checks (each returns the value normalised, or raises _FieldError) ---------------


def _text(value: Any, where: str, *, min_length: int = 0, max_length: int = 128) -> str:
    if not isinstance(value, str):
        raise _FieldError(where, f"must be a string; got {type(value).__name__}")
    if not min_length <= len(value) <= max_length:
        raise _FieldError(
            where, f"must be {min_length} to {max_length} characters; got {len(value)}"
        )
    try:
        return check_text(value)
    except ValueError as exc:
        raise _FieldError(where, str(exc)) from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _FieldError(where, f"must be a number; got {type(value).__name__}")
    if not math.isfinite(value):
        raise _FieldError(where, f"must be a finite number; got {value}")
    return float(value)


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> Any:
    if value not in choices or not isinstance(value, str):
        expected = ", ".join(repr(c) for c in choices)
        raise _FieldError(where, f"must be one of {expected}; got {value!r}")
    return value


def _list(value: Any, where: str, *, min_length: int = 0, max_length: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _FieldError(where, f"must be a list; got {type(value).__name__}")
    if not min_length <= len(value) <= max_length:
        raise _FieldError(where, f"must hold {min_length} to {max_length} items; got {len(value)}")
    return list(value)


_T = TypeVar("_T")


def _items(
    value: Any, where: str, build: Callable[[Any, str], _T], *, min_length: int, max_length: int
) -> list[_T]:
    items = _list(value, where, min_length=min_length, max_length=max_length)
    return [build(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalising a frozen dataclass in __post_init__


_S = TypeVar("_S", bound="_Spec")


class _Spec:
    """Shared parsing of the schema classes: from a dict, to a dict."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _PYDANTIC_CONFIG

    @classmethod
    def _parse(cls: type[_S], data: Any, where: str = "") -> _S:
        """Build from a JSON object, naming the path of the first bad field."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise _FieldError(where, f"must be an object; got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in known:
                path = f"{where}.{key}" if where else str(key)
                raise _FieldError(path, "extra inputs are not permitted")
        for name, spec in known.items():
            no_default = spec.default is dataclasses.MISSING
            if no_default and spec.default_factory is dataclasses.MISSING and name not in data:
                raise _FieldError(f"{where}.{name}" if where else name, "field required")
        try:
            return cls(**data)
        except _FieldError as exc:
            raise exc.inside(where) if where else exc from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]
        return data


@dataclass(frozen=True)
class Normalization(_Spec):
    """``y = (x * scale - mean[c]) / std[c]``, per channel (or per feature for tables)."""

    scale: float = 1.0
    mean: list[float] = field(default_factory=lambda: [0.0])
    std: list[float] = field(default_factory=lambda: [1.0])

    def __post_init__(self) -> None:
        _set(self, "scale", _number(self.scale, "scale"))
        for name in ("mean", "std"):
            values = _list(getattr(self, name), name, max_length=4096)
            _set(self, name, [_number(v, f"{name}[{i}]") for i, v in enumerate(values)])
        if len(self.mean) != len(self.std):
            raise _FieldError(
                "",
                f"mean and std need the same length; got {len(self.mean)} and {len(self.std)}",
            )
        if any(s <= 0 for s in self.std):
            raise _FieldError("", "every std must be > 0")


def _axis(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(where, f"must be an int or null; got {type(value).__name__}")
    if not 1 <= value <= MAX_AXIS:
        raise _FieldError(where, f"must be in [1, {MAX_AXIS}]; got {value}")
    return value


@dataclass(frozen=True)
class InputSpec(_Spec):
    """One model input. ``shape[0]`` is the batch axis and must be ``None`` (dynamic)."""

    name: str
    shape: list[int | None]
    dtype: Literal["float32", "float16", "uint8", "int8", "int32", "int64"] = "float32"
    layout: Literal["NCHW", "NHWC", "NCL", "NC"] = "NCHW"
    value_range: tuple[float, float] | None = None
    normalization: Normalization | None = None

    def __post_init__(self) -> None:
        _text(self.name, "name", min_length=1)
        _choice(self.dtype, "dtype", _DTYPES)
        _choice(self.layout, "layout", _LAYOUTS)
        _set(self, "shape", _check_shape(self.shape))
        if self.value_range is not None:
            pair = _list(self.value_range, "value_range", min_length=2, max_length=2)
            low, high = (_number(v, f"value_range[{i}]") for i, v in enumerate(pair))
            if low > high:
                raise _FieldError("", f"value_range must be (low, high); got {(low, high)}")
            _set(self, "value_range", (low, high))
        if self.normalization is not None:
            try:
                _set(self, "normalization", Normalization._parse(self.normalization))
            except _FieldError as exc:
                raise exc.inside("normalization") from None
        rank = _LAYOUT_RANK[self.layout]
        if len(self.shape) != rank:
            raise _FieldError(
                "", f"layout {self.layout} needs a shape of rank {rank}; got {len(self.shape)}"
            )
        if self.normalization is not None:
            n = len(self.normalization.mean)
            if n not in (1, self.channels):
                raise _FieldError(
                    "",
                    f"normalization has {n} mean/std values; expected 1 or {self.channels} "
                    f"(the {self.layout} channel count)",
                )

    @property
    def channels(self) -> int:
        """The channel count (the feature count for ``NC``)."""
        index = _CHANNEL_AXIS[self.layout]
        value = self.shape[index]
        assert value is not None
        return value

    @functools.cached_property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample (the shape without its batch axis; computed once)."""
        return tuple(int(d) for d in self.shape[1:] if d is not None)


def _check_shape(value: Any) -> list[int | None]:
    shape = [_axis(d, f"shape[{i}]") for i, d in enumerate(_list(value, "shape", max_length=8))]
    if len(shape) < 2:
        raise _FieldError("shape", f"needs a batch axis and at least one more axis; got {shape}")
    if shape[0] is not None:
        raise _FieldError("shape", f"the first (batch) axis must be null (dynamic); got {shape[0]}")
    if any(d is None for d in shape[1:]):
        raise _FieldError("shape", f"axes after the batch axis must be positive ints; got {shape}")
    if math.prod(d for d in shape[1:] if d is not None) > MAX_SAMPLE_VALUES:
        raise _FieldError(
            "shape", f"one sample may hold at most {MAX_SAMPLE_VALUES} values; got {shape}"
        )
    return shape


@dataclass(frozen=True)
class OutputSpec(_Spec):
    """One model output: class probabilities or logits, with one label per class."""

    name: str
    labels: list[str]
    kind: Literal["probabilities", "logits"] = "probabilities"

    def __post_init__(self) -> None:
        _text(self.name, "name", min_length=1)
        _choice(self.kind, "kind", _KINDS)
        labels = _list(self.labels, "labels", min_length=1, max_length=100_000)
        labels = [_text(v, f"labels[{i}]", max_length=256) for i, v in enumerate(labels)]
        if len(set(labels)) != len(labels):
            raise _FieldError("labels", "labels must be unique")
        if any(not label for label in labels):
            raise _FieldError("labels", "labels must be non-empty strings")
        _set(self, "labels", labels)


@dataclass(frozen=True)
class PreprocessStep(_Spec):
    """A documented step a client performs before the model (in this order)."""

    op: Literal["resize", "grayscale", "to_float", "normalize", "transpose"]
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _choice(self.op, "op", _OPS)
        if not isinstance(self.params, dict) or not all(isinstance(k, str) for k in self.params):
            raise _FieldError("params", "must be a JSON object")
        try:
            check_value(self.params, "the object")
        except ValueError as exc:
            raise _FieldError("params", str(exc)) from None


@dataclass(frozen=True)
class ModelSchema(_Spec):
    """The contract of a model's inputs and outputs; JSON-serialisable and versioned."""

    name: str
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    format_version: int = FORMAT_VERSION
    task: Literal["classification"] = "classification"
    preprocessing: list[PreprocessStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION or isinstance(self.format_version, bool):
            raise _FieldError(
                "format_version",
                f"unsupported schema format_version {self.format_version!r}; this pocketml "
                f"reads {FORMAT_VERSION}. Upgrade pocketml or re-export the schema.",
            )
        _text(self.name, "name", min_length=1)
        _choice(self.task, "task", ("classification",))
        for name, cls, low in (
            ("inputs", InputSpec, 1),
            ("outputs", OutputSpec, 1),
            ("preprocessing", PreprocessStep, 0),
        ):
            parse = cls._parse
            value = getattr(self, name)
            _set(self, name, _items(value, name, parse, min_length=low, max_length=64))

    # -- serialisation -------------------------------------------------------------------

    def to_json(self) -> str:
        """Indented JSON text, stable key order."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> ModelSchema:
        """Parse a dict; raise SchemaError naming the first bad field."""
        if not isinstance(data, dict):
            raise SchemaError(f"a schema must be a JSON object; got {type(data).__name__}")
        try:
            return cls._parse(data)
        except _FieldError as exc:
            raise SchemaError(f"invalid model schema: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSchema:
        """Parse JSON text; raise SchemaError for bad JSON or bad fields."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
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
