"""Parquet tensor columns as a dataset source: one list of numbers per row plus a label."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pocketml.data import _parquet, load_dataset, load_parquet_tensors, tensor_field_metadata
from pocketml.errors import DataValidationError, InvalidInput

X = np.random.default_rng(0).normal(size=(12, 3, 16)).astype(np.float32)
LABELS = ["walk", "run", "still"] * 4


def _write(
    path: Path, column: Any, labels: Any = LABELS, *, field: pa.Field | None = None, **extra: Any
) -> Path:
    columns = {"window": column, "label": pa.array(labels), **extra}
    schema = None
    if field is not None:
        schema = pa.schema([field, pa.field("label", pa.string())])
    pq.write_table(pa.table(columns, schema=schema), path)
    return path


def _fixed(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), int(np.prod(x.shape[1:])))


def test_a_fixed_size_list_column_loads_as_table_rows_without_a_shape(tmp_path: Path) -> None:
    data = load_dataset(_write(tmp_path / "w.parquet", _fixed(X)), target="label")
    assert (data.layout, data.features.shape) == ("NC", (12, 48))
    assert data.class_names == ("run", "still", "walk")
    assert data.labels.tolist()[:3] == [2, 0, 1]


def test_a_shape_turns_the_rows_into_sensor_windows(tmp_path: Path) -> None:
    data = load_dataset(_write(tmp_path / "w.parquet", _fixed(X)), target="label", shape=(3, 16))
    assert data.layout == "NCL"
    assert np.array_equal(data.features, X)


def test_the_shape_recorded_in_the_field_metadata_is_used(tmp_path: Path) -> None:
    field = pa.field("window", pa.list_(pa.float32()), metadata=tensor_field_metadata((1, 4, 12)))
    rows = pa.array(list(X.reshape(12, -1)), type=pa.list_(pa.float32()))
    data = load_parquet_tensors(_write(tmp_path / "i.parquet", rows, field=field), "label")
    assert (data.layout, data.features.shape) == ("NCHW", (12, 1, 4, 12))
    assert np.array_equal(data.features.reshape(12, -1), X.reshape(12, -1))


def test_rows_of_different_lengths_are_refused_naming_them(tmp_path: Path) -> None:
    rows = [list(range(48))] * 10 + [list(range(40)), list(range(47))]
    path = _write(tmp_path / "r.parquet", pa.array(rows, type=pa.list_(pa.float32())))
    with pytest.raises(DataValidationError, match=r"every row needs 48 values.*data rows 11, 12"):
        load_dataset(path, target="label")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([None] + [[1.0, 2.0]] * 11, "data rows 1 are null"),
        ([[1.0, None]] + [[1.0, 2.0]] * 11, "data rows 1 have nulls"),
        ([[1.0, 2.0]] * 11 + [[float("nan"), 2.0]], "data rows 12 hold NaN"),
    ],
)
def test_missing_values_are_refused_naming_the_rows(
    tmp_path: Path, rows: list[Any], message: str
) -> None:
    path = _write(tmp_path / "m.parquet", pa.array(rows, type=pa.list_(pa.float64())))
    with pytest.raises(DataValidationError, match=message):
        load_dataset(path, target="label")


def test_a_shape_of_another_size_is_refused_with_the_row_length(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.parquet", _fixed(X))
    with pytest.raises(InvalidInput, match=r"shape \[3, 15\] needs 45 values.*product is 48"):
        load_dataset(path, target="label", shape=(3, 15))


def test_extra_columns_and_string_lists_are_refused(tmp_path: Path) -> None:
    extra = _write(tmp_path / "e.parquet", _fixed(X), other=pa.array([1.0] * 12))
    with pytest.raises(InvalidInput, match=r"exactly one tensor column.*other columns \['other'\]"):
        load_dataset(extra, target="label")
    words = _write(tmp_path / "s.parquet", pa.array([["a", "b"]] * 12))
    with pytest.raises(InvalidInput, match="must hold numbers"):
        load_dataset(words, target="label")


def test_a_file_over_the_value_limit_is_refused_from_its_footer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_parquet, "MAX_TENSOR_VALUES", 12 * 48 - 1)
    with pytest.raises(InvalidInput, match="holds 576 tensor values; at most 575"):
        load_dataset(_write(tmp_path / "w.parquet", _fixed(X)), target="label")


def test_a_shape_for_a_plain_table_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "label": ["x", "y"]}), table)
    with pytest.raises(InvalidInput, match="has none"):
        load_dataset(table, target="label", shape=(1,))
    with pytest.raises(InvalidInput, match=r"not a \.parquet file"):
        load_dataset("digits", shape=(1, 8, 8))
