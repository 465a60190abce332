"""ModelSchema: JSON round trip and rejection of each kind of malformed schema."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from pocketml.errors import InvalidInput, SchemaError
from pocketml.schema import InputSpec, ModelSchema, Normalization, OutputSpec


def _schema() -> ModelSchema:
    return ModelSchema(
        name="digits",
        inputs=[
            InputSpec(
                name="input",
                shape=[None, 1, 8, 8],
                value_range=(0, 16),
                normalization=Normalization(scale=1 / 16),
            )
        ],
        outputs=[OutputSpec(name="probabilities", labels=[str(i) for i in range(10)])],
    )


def _valid_dict() -> dict[str, Any]:
    return json.loads(_schema().to_json())


def test_round_trip_through_json_is_lossless() -> None:
    schema = _schema()
    assert ModelSchema.from_json(schema.to_json()) == schema
    assert json.loads(schema.to_json())["format_version"] == 1


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["inputs"][0].update(shape=[1, 1, 8, 8]), "inputs[0].shape"),
        (lambda d: d["inputs"][0].update(shape=[None, 1, 0, 8]), "inputs[0].shape"),
        (lambda d: d["inputs"][0].update(dtype="float128"), "inputs[0].dtype"),
        (lambda d: d["inputs"][0].update(layout="NC"), "inputs[0]"),
        (lambda d: d["outputs"][0].update(labels=["a", "a"]), "outputs[0].labels"),
        (lambda d: d["outputs"][0].update(kind="boxes"), "outputs[0].kind"),
        (lambda d: d.update(outputs=[]), "outputs"),
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.update(colour="red"), "colour"),
        (lambda d: d["inputs"][0]["normalization"].update(std=[0.0]), "inputs[0].normalization"),
        (lambda d: d.pop("name"), "name"),
    ],
)
def test_malformed_schema_is_rejected_naming_the_field(mutate: Any, field: str) -> None:
    data = _valid_dict()
    mutate(data)
    with pytest.raises(SchemaError) as info:
        ModelSchema.from_dict(data)
    assert f"field '{field}" in str(info.value)


def test_invalid_json_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="not valid JSON"):
        ModelSchema.from_json("{nope")


def test_check_batch_accepts_one_sample_and_rejects_wrong_shapes() -> None:
    schema = _schema()
    assert schema.check_batch(np.zeros((1, 8, 8))).shape == (1, 1, 8, 8)
    with pytest.raises(InvalidInput, match=r"shape \(N, 1, 8, 8\)"):
        schema.check_batch(np.zeros((2, 64)))
    with pytest.raises(InvalidInput, match="NaN"):
        schema.check_batch(np.full((1, 1, 8, 8), np.nan))


def test_normalize_applies_scale_then_mean_and_std() -> None:
    schema = _schema()
    assert np.allclose(schema.normalize(np.full((1, 1, 8, 8), 16.0)), 1.0)


def test_the_layout_type_names_exactly_the_layouts_the_checks_know() -> None:
    import typing

    from pocketml import schema

    hints = typing.get_type_hints(schema.InputSpec)
    assert set(typing.get_args(hints["layout"])) == set(schema._LAYOUT_RANK)
    assert set(schema._CHANNEL_AXIS) == set(schema._LAYOUT_RANK)
