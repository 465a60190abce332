"""Aggregators: FedAvg weights by samples; the robust ones resist 20 % attackers."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.errors import InvalidInput
from pocketml.federated import (
    centered_clipping,
    coordinate_median,
    fedavg,
    fltrust,
    trimmed_mean,
)


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


def test_centered_clipping_neutralises_20_percent_scaled_and_flipped_updates() -> None:
    true, updates = _attacked(2)

    robust = centered_clipping(updates)

    assert np.linalg.norm(robust - true) < 0.2 * np.linalg.norm(true)


def test_centered_clipping_keeps_the_minority_classes_signal_that_the_median_discards() -> None:
    # Non-IID: each client moves only the block of its own class (10 classes, 2 clients
    # each); per coordinate, 18 of 20 values are 0, so the median and the trimmed mean
    # return 0 for every block, while centered clipping keeps the mean's direction.
    blocks = np.eye(10).repeat(5, axis=1)
    updates = [blocks[i // 2] for i in range(20)]
    mean = fedavg(updates)

    assert np.allclose(coordinate_median(updates), 0.0)
    assert np.allclose(trimmed_mean(updates, 0.2), 0.0)
    np.testing.assert_allclose(centered_clipping(updates), mean)


def test_centered_clipping_bounds_one_update_pull_by_the_radius() -> None:
    updates = [np.zeros(4)] * 4 + [np.array([1000.0, 0.0, 0.0, 0.0])]

    moved = centered_clipping(updates, radius=1.0, iterations=1)

    np.testing.assert_allclose(moved, [0.2, 0.0, 0.0, 0.0])


def test_centered_clipping_starts_from_the_given_centre() -> None:
    updates = [np.array([1.0, 1.0])] * 3

    np.testing.assert_allclose(
        centered_clipping(updates, center=np.array([1.0, 1.0]), radius=0.1), [1.0, 1.0]
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": 0.0}, "radius"),
        ({"radius": float("inf")}, "radius"),
        ({"iterations": 0}, "iterations"),
        ({"center": np.zeros(3)}, "center must have 2 values"),
    ],
)
def test_centered_clipping_refuses_bad_parameters(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput, match=match):
        centered_clipping([np.zeros(2), np.ones(2)], **kwargs)


def test_fltrust_gives_no_weight_to_updates_pointing_away_from_the_reference() -> None:
    true, updates = _attacked(3)
    reference = true + np.random.default_rng(4).normal(scale=0.3, size=true.size)

    robust = fltrust(updates, reference, norm=float(np.linalg.norm(true)))

    honest_only = fltrust(updates[:40], reference, norm=float(np.linalg.norm(true)))
    np.testing.assert_allclose(robust, honest_only)
    assert np.linalg.norm(robust - true) < 0.1 * np.linalg.norm(true)


def test_fltrust_rescales_every_update_to_the_reference_length_by_default() -> None:
    updates = [np.array([3.0, 0.0]), np.array([0.0, 50.0])]

    aggregate = fltrust(updates, np.array([1.0, 1.0]))

    # Equal cosines, so equal weights, and both rescaled to sqrt(2).
    np.testing.assert_allclose(aggregate, [np.sqrt(2) / 2, np.sqrt(2) / 2])


def test_fltrust_returns_zero_when_no_update_agrees_with_the_reference() -> None:
    aggregate = fltrust([np.array([-1.0, 0.0])], np.array([1.0, 0.0]))

    np.testing.assert_array_equal(aggregate, [0.0, 0.0])


@pytest.mark.parametrize(
    ("reference", "norm", "match"),
    [
        (np.zeros(2), None, "non-zero"),
        (np.ones(3), None, "reference must have 2 values"),
        (np.array([np.inf, 1.0]), None, "finite"),
        (np.ones(2), -1.0, "norm"),
    ],
)
def test_fltrust_refuses_a_bad_reference_or_norm(
    reference: np.ndarray, norm: float | None, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        fltrust([np.ones(2)], reference, norm=norm)
