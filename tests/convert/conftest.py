"""A small trained digits CNN shared by the conversion tests (trained once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.data import load_digits
from pocketml.train import TrainConfig, TrainResult, model_inputs, train


@pytest.fixture(scope="session")
def small_cnn() -> TrainResult:
    return train(load_digits().split(seed=0), "cnn-small", config=TrainConfig(seed=0, epochs=4))


@pytest.fixture(scope="session")
def small_cnn_samples(small_cnn: TrainResult) -> np.ndarray:
    return model_inputs(small_cnn.model, small_cnn.splits.test)
