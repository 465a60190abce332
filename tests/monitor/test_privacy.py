"""Local DP: the noise has its declared law, the ledger composes with dp-accounting and refuses."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld

from pocketml.db import WRITE
from pocketml.errors import InvalidInput, PrivacyBudgetExceeded
from pocketml.monitor import (
    DELTA,
    Charge,
    build_profile,
    charge_privacy,
    compose_epsilon,
    read_ledger,
)
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.sketch import (
    ReferenceProfile,
    Sketch,
    geometric_variance,
    noise_bound,
    parse_noisy_counts,
    privatize,
    sensitivity_of,
)

DAY = 86_400


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(11)
    return build_profile(
        {"x0": rng.normal(size=2000), "x1": rng.exponential(size=2000)},
        predicted_class=rng.integers(0, 3, size=2000),
        confidence=rng.uniform(0.3, 1.0, size=2000),
        num_classes=3,
        projections=0,
    )


def _sketch(profile: ReferenceProfile, rows: int, seed: int) -> Sketch:
    rng = np.random.default_rng(seed)
    return profile.sketch(
        {"x0": rng.normal(size=rows), "x1": rng.exponential(size=rows)},
        rng.integers(0, 3, size=rows),
        rng.uniform(0.3, 1.0, size=rows),
    )


# ---------------------------------------------------------------- the mechanism


def test_the_sensitivity_is_one_bin_per_block_plus_n(profile: ReferenceProfile) -> None:
    assert sensitivity_of(profile.layout) == len(profile.layout.names) + 1 == 5


@pytest.mark.parametrize("epsilon", [0.05, 1.0, 4.0])
def test_the_noise_has_the_declared_variance_mean_and_zero_mass_on_many_draws(
    profile: ReferenceProfile, epsilon: float
) -> None:
    exact = _sketch(profile, 200, seed=1)
    rng = np.random.default_rng(2)
    draws = [privatize(exact, epsilon, rng) for _ in range(400)]
    noise = np.concatenate(
        [np.append(noisy.counts - exact.counts, noisy.n - exact.n) for noisy, _ in draws]
    ).astype(np.float64)
    declared = geometric_variance(epsilon, sensitivity_of(profile.layout))
    a = math.exp(-epsilon / sensitivity_of(profile.layout))

    assert {variance for _, variance in draws} == {declared}
    assert noise.var() == pytest.approx(declared, rel=0.05)  # ~20,000 draws: sd of var ~1.5%
    assert abs(noise.mean()) < 4 * math.sqrt(declared / noise.size)
    assert np.mean(noise == 0) == pytest.approx((1 - a) / (1 + a), abs=0.01)


def test_noisy_counts_stay_negative_when_the_noise_says_so(profile: ReferenceProfile) -> None:
    noisy, _ = privatize(_sketch(profile, 3, seed=1), 0.5, np.random.default_rng(3))
    assert noisy.counts.min() < 0  # never clipped: clipping biases the fleet's sum


def test_the_merged_noisy_counts_of_a_fleet_are_unbiased(profile: ReferenceProfile) -> None:
    exact = [_sketch(profile, 20, seed=s) for s in range(300)]
    rng = np.random.default_rng(4)
    noisy = sum(privatize(s, 1.0, rng)[0].counts for s in exact)
    truth = sum(s.counts for s in exact)
    sd = math.sqrt(300 * geometric_variance(1.0, sensitivity_of(profile.layout)))
    assert np.all(np.abs(noisy - truth) < 5 * sd)


def test_a_bad_epsilon_is_refused(profile: ReferenceProfile) -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(InvalidInput, match="epsilon"):
            privatize(_sketch(profile, 3, 1), bad, np.random.default_rng(0))


def test_the_server_gate_accepts_every_honest_noisy_sketch_and_refuses_beyond_the_bound(
    profile: ReferenceProfile,
) -> None:
    rng = np.random.default_rng(5)
    exact = _sketch(profile, 50, seed=6)
    for _ in range(300):
        noisy, _ = privatize(exact, 0.1, rng)
        parse_noisy_counts(noisy.counts, noisy.n, profile.layout, 0.1)
    bound = noise_bound(0.1, sensitivity_of(profile.layout))
    hostile = exact.counts.copy()
    hostile[3] = -bound - 1
    with pytest.raises(InvalidInput, match=r"counts\.x0\[3\]"):
        parse_noisy_counts(hostile, exact.n, profile.layout, 0.1)
    with pytest.raises(InvalidInput, match=r"^n must"):
        parse_noisy_counts(exact.counts, 10**12, profile.layout, 0.1)


# ---------------------------------------------------------------- accounting


def test_the_composed_epsilon_is_dp_accountings_pld_answer() -> None:
    accountant = pld.PLDAccountant()
    accountant.compose(
        dp_accounting.ComposedDpEvent(
            [dp_accounting.LaplaceDpEvent(1 / 0.1)] * 3 + [dp_accounting.LaplaceDpEvent(1 / 0.3)]
        )
    )
    assert compose_epsilon({0.1: 3, 0.3: 1}) == pytest.approx(
        accountant.get_epsilon(DELTA), abs=1e-6
    )


def test_composition_never_exceeds_the_plain_sum_beyond_the_discretisation() -> None:
    rng = np.random.default_rng(7)
    for _ in range(10):
        epsilons = rng.choice([0.02, 0.05, 0.1, 0.25], size=int(rng.integers(1, 30)))
        charges = {float(e): int(np.sum(epsilons == e)) for e in set(epsilons)}
        assert compose_epsilon(charges) <= float(epsilons.sum()) + 1e-3
    assert compose_epsilon({1 / 24: 24}) < 1.0  # a device spending by the sum is never refused


@pytest.fixture
def registry(database_url: str, tmp_path: Path) -> Iterator[Registry]:
    master = MasterKey.from_b64(base64.b64encode(bytes(range(32))).decode("ascii"))
    with Registry(database_url, LocalArtifactStore(tmp_path / "artifacts"), master) as opened:
        yield opened


def _charge(registry: Registry, app_id: str, charges: list[Charge]) -> None:
    engine = registry.store.engine
    with engine.connect().execution_options(**WRITE) as conn, conn.begin():
        charge_privacy(conn, app_id, "device-1", charges)


def test_the_ledger_charges_a_day_and_refuses_the_event_that_goes_over(
    registry: Registry,
) -> None:
    app_id = registry.create_app("privacy").app.id
    day = 20_000 * DAY
    _charge(registry, app_id, [Charge(i, day + 60 * i, 0.25, 1.0) for i in range(3)])

    with pytest.raises(PrivacyBudgetExceeded, match=r"events\[1\]\.epsilon"):
        _charge(
            registry, app_id, [Charge(0, day + 500, 0.25, 1.0), Charge(1, day + 600, 0.25, 1.0)]
        )

    (charged,) = read_ledger(registry.store.engine, app_id, "device-1")
    assert charged.events == 3  # the refused batch rolled back, its first event included
    assert charged.epsilon == pytest.approx(0.75, abs=1e-3)


def test_each_utc_day_has_its_own_budget(registry: Registry) -> None:
    app_id = registry.create_app("privacy").app.id
    day = 20_000 * DAY
    _charge(registry, app_id, [Charge(0, day + DAY - 1, 0.9, 1.0), Charge(1, day + DAY, 0.9, 1.0)])
    assert [d.events for d in read_ledger(registry.store.engine, app_id, "device-1")] == [1, 1]
