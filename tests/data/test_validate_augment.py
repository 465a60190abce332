"""Validation against a schema (every violation with its row) and augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from pocketml.data import (
    Augmentation,
    RawTable,
    augment_dataset,
    from_arrays,
    load_digits,
    parse_augmentations,
    validate_dataset,
    validate_table,
)
from pocketml.errors import DataValidationError, InvalidInput
from pocketml.schema import InputSpec, ModelSchema, OutputSpec


def _table_schema(features: int = 2, labels: tuple[str, ...] = ("a", "b")) -> ModelSchema:
    return ModelSchema(
        name="t",
        inputs=[InputSpec(name="input", shape=[None, features], layout="NC", value_range=(0, 10))],
        outputs=[OutputSpec(name="probabilities", labels=list(labels))],
    )


def test_table_validation_reports_every_violation_with_its_row() -> None:
    raw = RawTable(
        "t",
        {
            "f1": [1, None, 3, 50, 2],
            "f2": ["2", "3", "oops", "4", "5"],
            "label": ["a", "b", "a", "a", "zebra"],
        },
    )
    report = validate_table(raw, _table_schema(), "label")
    found = {(v.kind, v.row) for v in report.violations}
    assert found == {("missing", 2), ("dtype", 3), ("range", 4), ("label", 5)}
    assert report.counts() == {"shape": 0, "dtype": 1, "missing": 1, "range": 1, "label": 1}
    with pytest.raises(DataValidationError, match="violates the schema"):
        report.raise_for_violations()


def test_table_with_the_wrong_number_of_columns_is_a_shape_violation() -> None:
    raw = RawTable("t", {"f1": [1], "label": ["a"]})
    report = validate_table(raw, _table_schema(features=2), "label")
    assert [v.kind for v in report.violations] == ["shape"]


def test_digits_pass_a_matching_schema_and_fail_a_mismatched_one() -> None:
    digits = load_digits()
    good = ModelSchema(
        name="digits",
        inputs=[InputSpec(name="input", shape=[None, 1, 8, 8], value_range=(0, 16))],
        outputs=[OutputSpec(name="probabilities", labels=[str(i) for i in range(10)])],
    )
    assert validate_dataset(digits, good).is_valid
    wrong = dataclasses.replace(good, inputs=[InputSpec(name="input", shape=[None, 1, 28, 28])])
    assert [v.kind for v in validate_dataset(digits, wrong).violations] == ["shape"]


def test_dataset_validation_finds_nan_rows_and_unknown_labels() -> None:
    x = np.ones((3, 2), dtype=np.float32)
    x[1, 0] = np.nan
    dataset = from_arrays(x, ["a", "c", "a"])
    report = validate_dataset(dataset, _table_schema())
    assert {(v.kind, v.row) for v in report.violations} == {("missing", 2), ("label", 2)}


def test_augmentation_is_deterministic_for_a_seed() -> None:
    test = load_digits().split(seed=0).test
    augs = parse_augmentations("dim=0.5,blur=0.3,noise=0.2,rotate=0.4")
    first = augment_dataset(test, augs, seed=7).features
    assert np.array_equal(first, augment_dataset(test, augs, seed=7).features)
    assert not np.array_equal(first, augment_dataset(test, augs, seed=8).features)


def test_dimming_darkens_and_zero_strength_changes_nothing() -> None:
    test = load_digits().split(seed=0).test
    darker = augment_dataset(test, [Augmentation("dim", 0.6)]).features
    assert darker.mean() == pytest.approx(test.features.mean() * 0.4, rel=1e-5)
    for name in ("dim", "blur", "noise", "rotate"):
        same = augment_dataset(test, [Augmentation(name, 0.0)]).features
        assert np.allclose(same, test.features, atol=1e-5), name


def test_noise_stays_inside_the_value_range() -> None:
    test = load_digits().split(seed=0).test
    noisy = augment_dataset(test, [Augmentation("noise", 1.0)]).features
    assert noisy.min() >= 0 and noisy.max() <= 16


@pytest.mark.parametrize(
    ("text", "message"), [("fog=0.5", "unknown augmentation"), ("dim=2", "strength must be in")]
)
def test_bad_augmentations_are_rejected(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_augmentations(text)
