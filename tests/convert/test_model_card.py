"""The model card names both dataset fingerprints: the lineage's and what training read."""

from __future__ import annotations

from pocketml.convert.build import render_model_card
from pocketml.schema import ModelSchema
from pocketml.testing import DIGITS_SCHEMA


def test_the_card_names_the_lineage_fingerprint_and_the_training_one_apart() -> None:
    schema = ModelSchema.from_dict(DIGITS_SCHEMA)
    run = {"dataset": {"name": "digits", "fingerprint": "splits:aa,bb,cc", "sizes": [1, 2, 3]}}

    card = render_model_card(schema, [], run, dataset_fingerprint="sha256:whole")

    assert "fingerprint `sha256:whole` (lineage)" in card
    assert "training read: fingerprint `splits:aa,bb,cc` (the run's splits)" in card
    without = render_model_card(schema, [], run)
    assert "(lineage)" not in without  # no lineage value: nothing printed under its name
