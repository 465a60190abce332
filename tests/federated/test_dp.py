"""DP-FedAvg (clipping, noise, adaptive clip norm) and the (ε, δ) from dp-accounting."""

from __future__ import annotations

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp_reference

from pocketml.errors import InvalidInput
from pocketml.federated import AdaptiveClipping, DPFedAvg, PrivacyAccountant


def test_without_noise_the_round_is_the_clipped_sum_over_the_expected_clients() -> None:
    dp = DPFedAvg(clip_norm=1.0, noise_multiplier=0.0, expected_clients=4)
    updates = [np.array([3.0, 4.0]), np.array([0.3, 0.4])]

    result = dp.aggregate(updates, np.random.default_rng(0))

    np.testing.assert_allclose(result.update, np.array([0.6 + 0.3, 0.8 + 0.4]) / 4)
    assert result.clipped_count == 1


def test_the_noise_on_the_mean_has_std_z_c_over_m() -> None:
    dp = DPFedAvg(clip_norm=2.0, noise_multiplier=1.5, expected_clients=10)

    result = dp.aggregate([np.zeros(50_000)] * 10, np.random.default_rng(1))

    assert result.update.std() == pytest.approx(1.5 * 2.0 / 10, rel=0.02)


def test_adaptive_clipping_moves_the_clip_norm_to_the_target_quantile() -> None:
    rng = np.random.default_rng(2)
    dp = DPFedAvg(
        clip_norm=0.1,
        noise_multiplier=1.0,
        expected_clients=100,
        adaptive=AdaptiveClipping(target_quantile=0.5, learning_rate=0.2, count_stddev=5.0),
    )
    for _ in range(150):
        norms = rng.uniform(0, 10, size=100)  # median 5
        updates = [np.array([n, 0.0]) for n in norms]
        dp.aggregate(updates, rng)

    assert dp.clip_norm == pytest.approx(5.0, rel=0.15)


def test_adaptive_clipping_raises_the_update_noise_to_pay_for_the_count() -> None:
    dp = DPFedAvg(1.0, 1.0, 10, adaptive=AdaptiveClipping(count_stddev=2.0))

    # (z^-2 - (2 sigma_b)^-2)^-1/2 = (1 - 1/16)^-1/2
    assert dp.update_noise_multiplier == pytest.approx((1 - 1 / 16) ** -0.5)


def test_a_count_noise_too_small_for_the_budget_is_refused() -> None:
    with pytest.raises(InvalidInput, match="count_stddev is too small"):
        DPFedAvg(1.0, 1.0, 10, adaptive=AdaptiveClipping(count_stddev=0.4))


def test_rdp_epsilon_matches_the_library_reference_for_full_participation() -> None:
    # q = 1: T rounds of the Gaussian mechanism have RDP T * alpha / (2 z^2) at order alpha.
    orders = np.array(rdp_reference.DEFAULT_RDP_ORDERS)
    accountant = PrivacyAccountant(noise_multiplier=2.0, sampling_probability=1.0, delta=1e-5)
    for _ in range(10):
        spent = accountant.spend_round()

    reference, _ = rdp_reference.compute_epsilon(orders, 10 * orders / (2 * 2.0**2), 1e-5)
    assert spent.epsilon == pytest.approx(reference, rel=1e-9)
    assert spent.rounds == 10


def test_rdp_epsilon_matches_the_library_reference_for_poisson_sampling() -> None:
    orders = rdp_reference.DEFAULT_RDP_ORDERS
    accountant = PrivacyAccountant(1.1, 0.01, 1e-5)
    accountant.rounds = 1000

    per_round = rdp_reference._compute_rdp_poisson_subsampled_gaussian(0.01, 1.1, orders)
    reference, _ = rdp_reference.compute_epsilon(orders, 1000 * np.asarray(per_round), 1e-5)
    assert accountant.spent().epsilon == pytest.approx(reference, rel=1e-9)


def test_pld_epsilon_of_one_full_round_is_the_exact_gaussian_epsilon() -> None:
    accountant = PrivacyAccountant(1.0, 1.0, 1e-5, accountant="pld")
    accountant.spend_round()

    exact = dp_accounting.get_epsilon_gaussian(1.0, 1e-5)
    assert accountant.spent().epsilon == pytest.approx(exact, rel=1e-3)


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    low, high = PrivacyAccountant(0.8, 0.05, 1e-5), PrivacyAccountant(1.6, 0.05, 1e-5)
    eps = [low.spend_round().epsilon for _ in range(5)]
    for _ in range(5):
        high.spend_round()

    assert eps == sorted(eps) and eps[0] < eps[-1]
    assert high.spent().epsilon < low.spent().epsilon
    assert PrivacyAccountant(1.0, 0.1, 1e-5).spent().epsilon == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"noise_multiplier": 0.0}, "noise_multiplier"),
        ({"sampling_probability": 1.5}, "sampling_probability"),
        ({"delta": 1.0}, "delta"),
        ({"accountant": "moments"}, "accountant"),
    ],
)
def test_bad_accountant_settings_are_refused(kwargs: dict, match: str) -> None:  # type: ignore[type-arg]
    settings = {"noise_multiplier": 1.0, "sampling_probability": 0.1, "delta": 1e-5, **kwargs}
    with pytest.raises(InvalidInput, match=match):
        PrivacyAccountant(**settings)


def test_per_round_reports_equal_the_librarys_accountant_composing_all_rounds_at_once() -> None:
    accountant = PrivacyAccountant(1.0, 0.02, 1e-6)
    reported = [accountant.spend_round().epsilon for _ in range(3)]

    for rounds, epsilon in enumerate(reported, start=1):
        reference = dp_accounting.rdp.RdpAccountant()
        reference.compose(
            dp_accounting.SelfComposedDpEvent(
                dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.0)),
                rounds,
            )
        )
        assert epsilon == pytest.approx(reference.get_epsilon(1e-6), rel=1e-12)


def test_adaptive_clipping_counts_the_clipped_bit_its_senders_reported() -> None:
    adaptive = AdaptiveClipping(target_quantile=0.5, learning_rate=0.2, count_stddev=1.0)
    within = [np.array([0.6, 0.8])] * 4  # clipped to C = 1 on the device: norm 1, not above

    measured = DPFedAvg(1.0, 0.0, 4, adaptive).aggregate(within, np.random.default_rng(0))
    told = DPFedAvg(1.0, 0.0, 4, adaptive).aggregate(
        within, np.random.default_rng(0), [True, True, True, None]
    )

    assert measured.clipped_count == 0 and told.clipped_count == 3
    assert measured.next_clip_norm == pytest.approx(np.exp(-0.2 * (1 - 0.5)))
    assert told.next_clip_norm == pytest.approx(np.exp(-0.2 * (0.25 - 0.5)))
