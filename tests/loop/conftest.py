"""Fixtures of the loop tests (helpers live in ``loop_kit.py``)."""

from __future__ import annotations

import pytest
from loop_kit import DigitsModels, train_digits_models


@pytest.fixture(scope="session")
def digits_models(tmp_path_factory: pytest.TempPathFactory) -> DigitsModels:
    """A good (3 epochs) and a poor (shuffled labels) mlp on digits, as ONNX files."""
    return train_digits_models(tmp_path_factory.mktemp("digits-models"))
