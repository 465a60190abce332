"""Parquet tensor columns: one list of numbers per row (a sensor window, an image) + a label.

Columnar stores hold tensors as a ``list<float>`` or ``fixed_size_list<float, n>`` column
beside the label. Each row is reshaped to the sample shape: the one given, else the
``shape`` the file records in the column's field metadata (a JSON list, e.g. ``[3, 128]``,
written by ``tensor_field_metadata``), else the flat length (a table row, layout NC).
The layout follows the sample rank as everywhere else (NC, NCL, NCHW).

Sizes are checked from the Parquet footer before any value is read: at most
``MAX_TENSOR_VALUES`` values in the file, ``MAX_SAMPLE_VALUES`` per row, so a hostile
file cannot make the loader allocate what the footer did not announce.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data._dataset import LAYOUT_RANKS, Dataset
from pocketml.errors import DataValidationError, InvalidInput, MissingDependencyError, NotFound

__all__ = [
    "MAX_SAMPLE_VALUES",
    "MAX_TENSOR_VALUES",
    "has_tensor_column",
    "load_parquet_tensors",
    "tensor_field_metadata",
]

MAX_TENSOR_VALUES = 1 << 28  # 1 GiB of float32 in memory
MAX_SAMPLE_VALUES = 1 << 24  # one 4096 x 4096 single-channel image
_SHAPE_KEY = b"shape"
_LAYOUT_BY_RANK = {rank: layout for layout, rank in LAYOUT_RANKS.items()}


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("pyarrow", "build", "to read Parquet") from exc
    return pa, pq


def tensor_field_metadata(shape: Sequence[int]) -> dict[bytes, bytes]:
    """The field metadata that records a tensor column's sample shape, e.g. ``(3, 128)``."""
    return {_SHAPE_KEY: json.dumps([int(d) for d in shape]).encode()}


def _is_tensor_type(pa: Any, data_type: Any) -> bool:
    lists = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
    return any(check(data_type) for check in lists)


def has_tensor_column(path: Path) -> bool:
    """True when a Parquet file has a list column (read from the footer only)."""
    pa, pq = _pyarrow()
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name} as Parquet: {exc}") from exc
    return any(_is_tensor_type(pa, field.type) for field in schema)


def load_parquet_tensors(
    path: Path | str, target: str, *, shape: Sequence[int] | None = None
) -> Dataset:
    """Load a Parquet file with one tensor column (a list of numbers per row) and labels.

    Args:
        path: the ``.parquet`` file.
        target: the label column.
        shape: the sample shape without the batch axis, e.g. ``(3, 128)`` for NCL windows;
            default: the column's recorded ``shape`` metadata, else the flat row length.

    Raises:
        NotFound: no such file.
        InvalidInput: not exactly one numeric list column besides ``target``, a shape whose
            product is not the row length, or sizes over the limits.
        DataValidationError: rows of other lengths, missing values or missing labels.
    """
    pa, pq = _pyarrow()
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"data file {str(path)!r} does not exist")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name} as Parquet: {exc}") from exc
    schema = parquet.schema_arrow
    column = _tensor_column(pa, schema, target, path.name)
    _check_footer_sizes(parquet, column, path.name)
    try:
        table = parquet.read(columns=[column, target])
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(f"cannot read {path.name}: {exc}") from exc
    sample_shape = _sample_shape(schema.field(column), shape, path.name)
    features = _features(pa, table.column(column), column, sample_shape, path.name)
    labels, class_names = _labels(table.column(target).to_pylist(), target, path.name)
    return Dataset(
        name=path.stem,
        features=features,
        labels=labels,
        class_names=class_names,
        layout=_LAYOUT_BY_RANK[len(sample_shape) + 1],
    )


def _tensor_column(pa: Any, schema: Any, target: str, name: str) -> str:
    if target not in schema.names:
        raise InvalidInput(
            f"target column {target!r} is not in {name}; columns are {', '.join(schema.names)}. "
            "Pass --target with the label column."
        )
    tensors = [f.name for f in schema if f.name != target and _is_tensor_type(pa, f.type)]
    others = [f.name for f in schema if f.name != target and f.name not in tensors]
    if len(tensors) != 1 or others:
        raise InvalidInput(
            f"{name} needs exactly one tensor column (a list of numbers per row) besides the "
            f"target {target!r}; it has tensor columns {tensors} and other columns {others}. "
            "Write one list column per sample and the label column only."
        )
    value_type = schema.field(tensors[0]).type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise InvalidInput(
            f"tensor column {tensors[0]!r} of {name} must hold numbers; got lists of "
            f"{value_type}. Store float32 values."
        )
    return str(tensors[0])


def _check_footer_sizes(parquet: Any, column: str, name: str) -> None:
    """Refuse a file whose footer announces more values than the limit (before reading)."""
    meta = parquet.metadata
    leaf = next(
        i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == column
    )
    values = sum(meta.row_group(g).column(leaf).num_values for g in range(meta.num_row_groups))
    if values > MAX_TENSOR_VALUES:
        raise InvalidInput(
            f"{name} holds {values:,} tensor values; at most {MAX_TENSOR_VALUES:,} are loaded "
            "into memory. Split the file or sample it."
        )


def _sample_shape(field: Any, shape: Sequence[int] | None, name: str) -> tuple[int, ...]:
    if shape is None and field.metadata and _SHAPE_KEY in field.metadata:
        try:
            shape = json.loads(field.metadata[_SHAPE_KEY])
        except ValueError as exc:
            raise InvalidInput(
                f"column {field.name!r} of {name} records a shape that is not JSON: "
                f"{field.metadata[_SHAPE_KEY][:80]!r}. Pass the shape explicitly."
            ) from exc
    if shape is None:
        size = getattr(field.type, "list_size", None)
        return () if size is None else (int(size),)  # () = the flat length, found later
    dims = tuple(shape)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise InvalidInput(
            f"a sample shape is 1 to 3 positive integers without the batch axis, e.g. "
            f"[3, 128] for 3-channel sensor windows; got {list(dims)} for {name}."
        )
    return dims


def _features(pa: Any, column: Any, name: str, shape: tuple[int, ...], file: str) -> np.ndarray:
    import pyarrow.compute as pc

    column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    null_rows = np.flatnonzero(np.asarray(column.is_null()))
    if null_rows.size:
        raise DataValidationError(f"tensor column {name!r} of {file}: {_rows(null_rows)} are null")
    row_length = int(lengths[0]) if len(lengths) else (math.prod(shape) if shape else 0)
    if row_length > MAX_SAMPLE_VALUES:
        raise InvalidInput(
            f"{file}: a row of {name!r} holds {row_length:,} values; at most "
            f"{MAX_SAMPLE_VALUES:,} per sample. Downsample the tensors."
        )
    odd = np.flatnonzero(lengths != row_length)
    if odd.size:
        raise DataValidationError(
            f"tensor column {name!r} of {file}: every row needs {row_length} values (as row 1 "
            f"has); {_rows(odd)} have {sorted(set(lengths[odd].tolist()))[:5]}"
        )
    shape = shape or (row_length,)
    if math.prod(shape) != row_length:
        raise InvalidInput(
            f"shape {list(shape)} needs {math.prod(shape)} values per row, but rows of "
            f"{name!r} in {file} hold {row_length}. Pass a shape whose product is {row_length}."
        )
    flat = column.flatten()
    if flat.null_count:
        bad = np.unique(np.flatnonzero(np.asarray(flat.is_null())) // max(row_length, 1))
        raise DataValidationError(f"tensor column {name!r} of {file}: {_rows(bad)} have nulls")
    values = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    missing = np.flatnonzero(~np.isfinite(values.reshape(len(column), -1)).all(axis=1))
    if missing.size:
        raise DataValidationError(
            f"tensor column {name!r} of {file}: {_rows(missing)} hold NaN or infinite values"
        )
    return values.reshape((len(column), *shape))


def _labels(values: list[Any], target: str, file: str) -> tuple[np.ndarray, tuple[str, ...]]:
    missing = np.flatnonzero(np.array([v is None for v in values], dtype=bool))
    if missing.size:
        raise DataValidationError(f"target column {target!r} of {file}: {_rows(missing)} are null")
    names = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(v)] for v in values], dtype=np.int64), tuple(names)


def _rows(indices: np.ndarray) -> str:
    """'data rows 3, 7 and 2 more' (1-based), as the table loader words it."""
    shown = ", ".join(str(int(i) + 1) for i in indices[:5])
    more = f" and {len(indices) - 5} more" if len(indices) > 5 else ""
    return f"data rows {shown}{more}"
