"""Federated rounds end to end in memory on non-IID digits (pixels as the embeddings)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pocketml.data import load_digits
from pocketml.errors import InvalidInput
from pocketml.federated import PrivacyAccountant, SimulationConfig, simulate, split_non_iid
from pocketml.fl import Head, LocalRecipe, train_head


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_digits()
    x = data.features.reshape(len(data.labels), -1) / 16.0
    order = np.random.default_rng(0).permutation(len(data.labels))
    train, test = order[:1400], order[1400:]
    return x[train], data.labels[train], x[test], data.labels[test]


def test_each_client_holds_only_its_classes_and_every_sample_goes_to_one_client() -> None:
    labels = np.repeat(np.arange(10), 30)

    parts = split_non_iid(labels, n_clients=20, classes_per_client=2, seed=0)

    assert max(np.unique(labels[p]).size for p in parts) <= 2
    together = np.concatenate(parts)
    assert np.array_equal(np.sort(together), np.arange(labels.size))


def test_fedavg_on_non_iid_clients_learns_what_one_client_cannot(digits) -> None:
    train_x, train_y, test_x, test_y = digits
    config = SimulationConfig(n_clients=50, clients_per_round=20, rounds=20)

    result = simulate(train_x, train_y, test_x, test_y, config)

    one_client = split_non_iid(train_y, 50, 2, seed=0)[0]
    alone = Head.zeros(64, 10)
    alone = alone.with_vector(
        train_head(alone, train_x[one_client], train_y[one_client], LocalRecipe(20), seed=0)
    )
    assert result.accuracy[-1] > 0.85
    assert alone.accuracy(test_x, test_y) < 0.3  # two classes of ten


def test_secure_aggregation_trains_the_same_model_as_the_clipped_mean(digits) -> None:
    train_x, train_y, test_x, test_y = digits
    base = {"n_clients": 20, "clients_per_round": 8, "rounds": 5, "clip_norm": 1.0}

    masked = simulate(
        train_x, train_y, test_x, test_y, SimulationConfig(**base, secure_aggregation=True)
    )
    noisy_free = simulate(
        train_x,
        train_y,
        test_x,
        test_y,
        SimulationConfig(**base, noise_multiplier=1e-9, secure_aggregation=False),
    )

    # DP-FedAvg with (almost) no noise is the uniform clipped mean, which SecAgg computes.
    np.testing.assert_allclose(masked.head.to_vector(), noisy_free.head.to_vector(), atol=1e-5)


def test_dp_rounds_report_the_accountants_epsilon_after_every_round(digits) -> None:
    logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's notes on dropped orders
    train_x, train_y, test_x, test_y = digits
    config = SimulationConfig(
        n_clients=50, clients_per_round=10, rounds=3, clip_norm=1.0, noise_multiplier=1.1
    )

    result = simulate(train_x, train_y, test_x, test_y, config)

    accountant = PrivacyAccountant(1.1, 10 / 50, 1e-5)
    assert result.epsilon == [accountant.spend_round().epsilon for _ in range(3)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"aggregator": "trimmed_mean", "clip_norm": 1.0, "secure_aggregation": True},
            "needs every update",
        ),
        ({"noise_multiplier": 1.0}, "clip_norm is required"),
        ({"clients_per_round": 0}, "clients_per_round"),
        ({"aggregator": "fltrust", "root_samples": 0}, "needs a root set"),
        ({"aggregator": "centered_clipping", "noise_multiplier": 1.0, "clip_norm": 1.0}, "needs"),
    ],
)
def test_inconsistent_simulations_are_refused(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidInput, match=match):
        SimulationConfig(**kwargs)


def _run(digits, **kwargs) -> float:  # type: ignore[no-untyped-def]
    train_x, train_y, test_x, test_y = digits
    config = SimulationConfig(n_clients=50, clients_per_round=20, rounds=20, **kwargs)
    return simulate(train_x, train_y, test_x, test_y, config).accuracy[-1]


def test_the_median_loses_accuracy_on_non_iid_clients_where_centered_clipping_does_not(
    digits,
) -> None:
    honest = _run(digits)

    assert _run(digits, aggregator="median") < honest - 0.05
    assert _run(digits, aggregator="centered_clipping") > honest - 0.01


def test_centered_clipping_keeps_scaled_attackers_close_to_the_honest_run(digits) -> None:
    attack = {"malicious_fraction": 0.2, "malicious_flip": False, "malicious_scale": 10.0}
    honest = _run(digits)

    assert _run(digits, **attack) < honest - 0.05
    assert _run(digits, aggregator="centered_clipping", **attack) > honest - 0.02


@pytest.mark.parametrize("aggregator", ["centered_clipping", "fltrust"])
def test_robust_aggregators_survive_flipped_scaled_attackers_that_break_fedavg(
    digits, aggregator: str
) -> None:
    assert _run(digits, malicious_fraction=0.2) < 0.3
    assert _run(digits, malicious_fraction=0.2, aggregator=aggregator) > 0.65


def test_absent_attackers_send_nothing_whatever_their_attack(digits) -> None:
    train_x, train_y, test_x, test_y = digits
    base = {"n_clients": 20, "clients_per_round": 8, "rounds": 3, "malicious_fraction": 0.25}

    quiet = simulate(
        train_x, train_y, test_x, test_y, SimulationConfig(**base, malicious_absent=True)
    )
    loud = simulate(
        train_x,
        train_y,
        test_x,
        test_y,
        SimulationConfig(**base, malicious_absent=True, malicious_scale=1e6),
    )
    attacked = simulate(train_x, train_y, test_x, test_y, SimulationConfig(**base))

    np.testing.assert_array_equal(quiet.head.to_vector(), loud.head.to_vector())
    assert not np.array_equal(quiet.head.to_vector(), attacked.head.to_vector())


@pytest.mark.parametrize("balanced", [True, False])
def test_a_root_set_larger_than_the_training_data_is_refused(digits, balanced: bool) -> None:
    train_x, train_y, test_x, test_y = digits
    config = SimulationConfig(
        aggregator="fltrust", root_samples=train_y.size + 1, root_balanced=balanced, rounds=1
    )

    with pytest.raises(InvalidInput, match=r"root_samples|root set"):
        simulate(train_x, train_y, test_x, test_y, config)


def test_a_round_that_sampled_only_absent_attackers_leaves_the_head_unchanged(digits) -> None:
    train_x, train_y, test_x, test_y = digits
    # Seed 1 samples one of the three attackers of four clients in its only round.
    config = SimulationConfig(
        n_clients=4,
        clients_per_round=1,
        rounds=1,
        malicious_fraction=0.75,
        malicious_absent=True,
        seed=1,
    )

    result = simulate(train_x, train_y, test_x, test_y, config)

    np.testing.assert_array_equal(result.head.to_vector(), np.zeros(650))
