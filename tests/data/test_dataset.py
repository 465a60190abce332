"""Dataset fingerprints, splits and loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pocketml.data import (
    Dataset,
    from_arrays,
    load_dataset,
    load_digits,
    load_image_folder,
    load_table,
)
from pocketml.errors import DataValidationError, InvalidInput, NotFound


def _tiny(values: np.ndarray | None = None) -> Dataset:
    x = np.arange(24, dtype=np.float32).reshape(6, 4) if values is None else values
    return from_arrays(x, [0, 1, 0, 1, 0, 1], class_names=["a", "b"], name="tiny")


def test_fingerprint_is_stable_for_the_same_data() -> None:
    assert _tiny().fingerprint == _tiny().fingerprint
    assert load_digits().fingerprint == load_digits().fingerprint


def test_fingerprint_changes_when_one_value_changes() -> None:
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    changed = x.copy()
    changed[3, 2] += 0.5
    assert _tiny(x).fingerprint != _tiny(changed).fingerprint


def test_fingerprint_changes_when_a_label_or_class_name_changes() -> None:
    base = _tiny()
    relabelled = from_arrays(base.features, [1, 1, 0, 1, 0, 1], class_names=["a", "b"])
    renamed = from_arrays(base.features, base.labels, class_names=["a", "c"])
    assert len({base.fingerprint, relabelled.fingerprint, renamed.fingerprint}) == 3


def test_split_is_deterministic_stratified_and_disjoint() -> None:
    digits = load_digits()
    first, second = digits.split(seed=3), digits.split(seed=3)
    assert np.array_equal(first.test.labels, second.test.labels)
    assert sum(first.sizes().values()) == len(digits)
    per_class_test = np.bincount(first.test.labels, minlength=10)
    assert per_class_test.min() >= 25  # every class is represented
    other = digits.split(seed=4)
    assert not np.array_equal(first.test.features, other.test.features)


def test_split_rejects_fractions_that_leave_no_training_data() -> None:
    with pytest.raises(InvalidInput, match="leave training data"):
        load_digits().split(validation=0.5, test=0.5)


def test_digits_loader_gives_grayscale_8x8_images_in_0_16() -> None:
    digits = load_digits()
    assert digits.sample_shape == (1, 8, 8)
    assert digits.num_classes == 10
    assert digits.features.min() == 0 and digits.features.max() == 16


def test_csv_and_parquet_load_the_same_table(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("f1,f2,label\n1,2,cat\n3,4,dog\n5,6,cat\n")
    table = pa.table({"f1": [1, 3, 5], "f2": [2.0, 4.0, 6.0], "label": ["cat", "dog", "cat"]})
    pq.write_table(table, tmp_path / "t.parquet")
    from_csv, from_parquet = load_table(csv, "label"), load_table(tmp_path / "t.parquet", "label")
    assert from_csv.class_names == ("cat", "dog")
    assert np.array_equal(from_csv.features, from_parquet.features)
    assert from_csv.feature_names == ("f1", "f2")


def test_csv_with_a_non_numeric_column_names_the_column_and_rows(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("f1,f2,label\n1,x,a\n2,3,b\n3,y,a\n")
    with pytest.raises(DataValidationError, match=r"column 'f2'.*non-numeric value 'x'.*rows 1, 3"):
        load_table(csv, "label")


def test_unknown_target_column_lists_the_columns(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("f1,label\n1,a\n2,b\n")
    with pytest.raises(InvalidInput, match="columns are f1, label"):
        load_table(csv, "species")


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        load_dataset(tmp_path / "nope.csv", target="y")


def test_image_folder_loads_one_class_per_subfolder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    dataset = load_image_folder(root, size=(16, 16))
    assert dataset.features.shape == (6, 3, 16, 16)
    assert dataset.class_names == ("cat", "dog")
    assert list(dataset.labels) == [0, 0, 0, 1, 1, 1]


def test_image_folder_needs_two_classes(tmp_path: Path) -> None:
    (tmp_path / "images" / "only").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="one sub-folder per class"):
        load_image_folder(tmp_path / "images")


def test_image_folder_with_an_empty_class_names_it(tmp_path: Path) -> None:
    root = tmp_path / "images"
    (root / "empty").mkdir(parents=True)
    (root / "full").mkdir()
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(root / "full" / "a.png")
    with pytest.raises(InvalidInput, match="class folder 'empty' has no"):
        load_image_folder(root)


def test_arrays_with_string_labels_map_to_sorted_classes() -> None:
    dataset = from_arrays(np.zeros((3, 2)), ["b", "a", "b"])
    assert dataset.class_names == ("a", "b")
    assert list(dataset.labels) == [1, 0, 1]


def test_labels_out_of_range_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="class indices"):
        Dataset("x", np.zeros((2, 2)), np.array([0, 5]), ("a", "b"), layout="NC")
