"""Aggregators: FedAvg weights by samples; trimmed mean and median resist 20 % attackers."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.federated import coordinate_median, fedavg, trimmed_mean


def test_fedavg_weights_updates_by_their_sample_counts() -> None:
    updates = [np.array([1.0, 0.0]), np.array([0.0, 1.0])]

    np.testing.assert_allclose(fedavg(updates, [3, 1]), [0.75, 0.25])
    np.testing.assert_allclose(fedavg(updates), [0.5, 0.5])


def _attacked(seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    # 40 honest clients around a true direction; 10 (20 %) send it flipped and scaled by 5
    # or by 20 (all on one side, so they do not cancel each other out).
    rng = np.random.default_rng(seed)
    true = rng.normal(size=30)
    honest = [true + rng.normal(scale=0.1, size=30) for _ in range(40)]
    malicious = [-5.0 * true for _ in range(5)] + [-20.0 * true for _ in range(5)]
    return true, honest + malicious


def test_trimmed_mean_neutralises_20_percent_scaled_and_flipped_updates() -> None:
    true, updates = _attacked(0)

    robust = trimmed_mean(updates, 0.2)

    assert np.linalg.norm(robust - true) < 0.1 * np.linalg.norm(true)
    assert np.linalg.norm(fedavg(updates) - true) > 0.5 * np.linalg.norm(true)


def test_coordinate_median_neutralises_20_percent_flipped_updates() -> None:
    true, updates = _attacked(1)

    assert np.linalg.norm(coordinate_median(updates) - true) < 0.1 * np.linalg.norm(true)


def test_a_non_finite_update_is_refused_by_the_aggregators() -> None:
    with pytest.raises(InvalidInput, match="finite"):
        fedavg([np.array([np.nan])])


@pytest.mark.parametrize("fraction", [-0.1, 0.5])
def test_a_trim_fraction_outside_zero_to_one_half_is_refused(fraction: float) -> None:
    with pytest.raises(InvalidInput, match="trim_fraction"):
        trimmed_mean([np.zeros(2)], fraction)
