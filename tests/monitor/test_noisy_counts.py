"""Noise-aware tests: counts with local-DP noise keep the false-alarm rate at alpha.

The noise is what a device-side two-sided geometric mechanism adds (the difference of two
geometric draws per bin), summed over the devices whose sketches were merged: for ``d``
devices the sum is the difference of two negative binomials with ``d`` successes. Its
variance per bin is ``d * 2a / (1 - a)^2`` with ``a = exp(-epsilon / sensitivity)``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pocketml.errors import InvalidInput
from pocketml.monitor import (
    ChiSquaredDetector,
    DriftDetector,
    JensenShannonDetector,
    PSIDetector,
    WassersteinDetector,
    build_profile,
    detect_drift,
    numeric_bins,
)
from pocketml.monitor._chi_squared import chi_squared_statistic, wald_statistic
from pocketml.monitor._detector import Groups, QuadraticNull, quadratic_null

REFERENCE = np.random.default_rng(0).standard_normal(10_000)
BINS = numeric_bins("x", REFERENCE)
REFERENCE_COUNTS = BINS.count(REFERENCE)
DECAY = float(np.exp(-0.5))  # epsilon 1, sensitivity 2 (one row moves two bins)
DEVICE_VARIANCE = 2 * DECAY / (1 - DECAY) ** 2  # 7.8 per bin per device


def _noise(rng: np.random.Generator, size: int, devices: int) -> np.ndarray:
    """The summed two-sided geometric noise of ``devices`` device sketches, per bin."""
    success = 1 - DECAY
    return rng.negative_binomial(devices, success, size) - rng.negative_binomial(
        devices, success, size
    )


def _detectors() -> list[DriftDetector]:
    return [
        ChiSquaredDetector(),
        PSIDetector(),
        JensenShannonDetector(),
        WassersteinDetector(BINS.points(), float(REFERENCE.std())),
    ]


def test_the_simulated_noise_has_the_declared_variance() -> None:
    noise = _noise(np.random.default_rng(1), 200_000, 10)
    assert abs(noise.mean()) < 0.05
    assert noise.var() == pytest.approx(10 * DEVICE_VARIANCE, rel=0.02)


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
@pytest.mark.parametrize(("size", "devices"), [(500, 10), (5000, 300)])
def test_null_false_alarms_with_noise_stay_at_alpha(
    detector: DriftDetector, size: int, devices: int
) -> None:
    draws = 300
    rng = np.random.default_rng(size + devices)
    alarms = tested = 0
    for _ in range(draws):
        counts = BINS.count(rng.standard_normal(size)) + _noise(rng, BINS.size, devices)
        result = detector.test(REFERENCE_COUNTS, counts, noise_variance=devices * DEVICE_VARIANCE)
        tested += result.is_tested
        alarms += result.drifted
    assert tested == draws  # the bound below is about real tests, not "not enough data"
    assert alarms <= stats.binom.ppf(0.999, draws, 0.01)


def test_noise_that_drowns_the_window_is_not_enough_data() -> None:
    """100 rows under 10 devices' noise (sd 9 per bin): no grouping expects 3 sd."""
    rng = np.random.default_rng(5)
    counts = BINS.count(rng.standard_normal(100)) + _noise(rng, BINS.size, 10)
    result = ChiSquaredDetector().test(
        REFERENCE_COUNTS, counts, noise_variance=10 * DEVICE_VARIANCE
    )
    assert not result.is_tested and not result.drifted
    assert "not enough data" in result.reason


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_ignoring_the_noise_raises_false_alarms(detector: DriftDetector) -> None:
    """The bound above can fail: the same noisy null windows, noise undeclared, alarm."""
    rng = np.random.default_rng(7)
    alarms = 0
    for _ in range(40):
        counts = BINS.count(rng.standard_normal(1000)) + _noise(rng, BINS.size, 100)
        alarms += detector.test(REFERENCE_COUNTS, np.clip(counts, 0, None)).drifted
    assert alarms >= 20


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_a_shift_is_still_seen_through_the_noise(detector: DriftDetector) -> None:
    rng = np.random.default_rng(8)
    counts = BINS.count(rng.standard_normal(5000) + 0.5) + _noise(rng, BINS.size, 100)
    result = detector.test(REFERENCE_COUNTS, counts, noise_variance=100 * DEVICE_VARIANCE)
    assert result.drifted and result.threshold is not None and result.score > result.threshold


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_vanishing_noise_gives_the_noise_free_answer(detector: DriftDetector) -> None:
    counts = BINS.count(np.random.default_rng(9).standard_normal(1000) * 1.1)
    exact = detector.test(REFERENCE_COUNTS, counts)
    noisy = detector.test(REFERENCE_COUNTS, counts, noise_variance=1e-9)
    assert exact.p_value is not None and noisy.p_value is not None
    assert noisy.p_value == pytest.approx(exact.p_value, rel=1e-4, abs=1e-12)
    assert noisy.threshold == pytest.approx(exact.threshold, rel=1e-4)


def test_the_wald_statistic_without_noise_is_pearsons() -> None:
    rng = np.random.default_rng(10)
    reference = REFERENCE_COUNTS.astype(np.float64)
    current = BINS.count(rng.standard_normal(3000) + 0.1).astype(np.float64)
    zero = np.zeros(reference.size)
    groups = Groups(reference, current, zero, zero + 1e-300, np.arange(reference.size))
    assert wald_statistic(groups) == pytest.approx(chi_squared_statistic(reference, current))


def test_the_quadratic_null_is_a_scaled_chi_squared_for_equal_weights() -> None:
    equal = quadratic_null(np.ones(5), np.eye(5) * 0.02)
    assert equal is not None
    assert equal.isf(0.01) == pytest.approx(0.02 * stats.chi2.isf(0.01, 5))
    assert equal.sf(0.1) == pytest.approx(stats.chi2.sf(5.0, 5))
    scaled = QuadraticNull.scaled_chi2(4, 0.5)
    assert scaled.sf(3.0) == pytest.approx(stats.chi2.sf(6.0, 4))


def test_the_quadratic_null_tail_matches_simulation_for_unequal_weights() -> None:
    weights = np.array([10.0, 1.0, 0.3, 0.1])
    null = quadratic_null(weights, np.eye(4))
    assert null is not None
    draws = np.random.default_rng(11).chisquare(1, (200_000, 4)) @ weights
    assert np.mean(draws > null.isf(0.01)) == pytest.approx(0.01, abs=0.002)


def test_window_against_a_noisy_previous_window() -> None:
    """Both sides noisy (current vs previous window): still at alpha."""
    rng = np.random.default_rng(12)
    detector = ChiSquaredDetector()
    variance = 100 * DEVICE_VARIANCE
    draws, alarms = 300, 0
    for _ in range(draws):
        previous = BINS.count(rng.standard_normal(2000)) + _noise(rng, BINS.size, 100)
        current = BINS.count(rng.standard_normal(2000)) + _noise(rng, BINS.size, 100)
        alarms += detector.test(
            previous, current, noise_variance=variance, reference_noise_variance=variance
        ).drifted
    assert alarms <= stats.binom.ppf(0.999, draws, 0.01)


def test_negative_counts_need_declared_noise() -> None:
    counts = BINS.count(REFERENCE[:500])
    counts[0] = -3
    with pytest.raises(InvalidInput, match="current bin counts must be >= 0"):
        ChiSquaredDetector().test(REFERENCE_COUNTS, counts)
    assert ChiSquaredDetector().test(REFERENCE_COUNTS, counts, noise_variance=20.0).is_tested


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), [1.0, 2.0], "x"])
def test_a_bad_noise_variance_is_refused_by_name(bad: object) -> None:
    with pytest.raises(InvalidInput, match="noise_variance"):
        PSIDetector().test(REFERENCE_COUNTS, REFERENCE_COUNTS, noise_variance=bad)  # type: ignore[arg-type]


def test_detect_drift_with_noise_keeps_alpha_and_sees_a_shift() -> None:
    rng = np.random.default_rng(13)

    def rows(n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
        z = rng.standard_normal((n, 2))
        return {"a": z[:, 0] + shift, "b": 0.6 * z[:, 0] + 0.8 * z[:, 1]}

    profile = build_profile(rows(10_000))
    variance = 100 * DEVICE_VARIANCE

    def noisy(sketch_rows: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
        sketch = profile.sketch(sketch_rows)
        noise = _noise(rng, sketch.counts.size, 100)
        return type(sketch)(sketch.layout, sketch.n, sketch.counts + noise)

    draws = 150
    alarms = sum(
        detect_drift(profile, noisy(rows(2000)), noise_variance=variance).drifted
        for _ in range(draws)
    )
    assert alarms <= stats.binom.ppf(0.999, draws, 0.01)
    shifted = detect_drift(profile, noisy(rows(5000, 0.5)), noise_variance=variance)
    assert shifted.drifted and shifted.features["a"].drifted
    with pytest.raises(InvalidInput, match="reference_noise_variance"):
        detect_drift(profile, noisy(rows(100)), reference_noise_variance=-1.0)
