"""Each detector: identical -> no drift, a known shift -> drift, null false alarms bounded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pocketml.monitor import (
    ChiSquaredDetector,
    DriftDetector,
    JensenShannonDetector,
    PSIDetector,
    WassersteinDetector,
    benjamini_hochberg,
    build_profile,
    detect_drift,
    numeric_bins,
)

REFERENCE = np.random.default_rng(0).standard_normal(10_000)
BINS = numeric_bins("x", REFERENCE)
REFERENCE_COUNTS = BINS.count(REFERENCE)


def _detectors() -> list[DriftDetector]:
    return [
        ChiSquaredDetector(),
        PSIDetector(),
        JensenShannonDetector(),
        WassersteinDetector(BINS.points(), float(REFERENCE.std())),
    ]


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_identical_distributions_do_not_drift(detector: DriftDetector) -> None:
    result = detector.test(REFERENCE_COUNTS, REFERENCE_COUNTS)
    assert result.is_tested and not result.drifted and result.p_value > 0.5


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_a_half_sigma_shift_drifts_at_500_rows(detector: DriftDetector) -> None:
    shifted = np.random.default_rng(1).standard_normal(500) + 0.5
    result = detector.test(REFERENCE_COUNTS, BINS.count(shifted))
    assert result.drifted and result.threshold is not None and result.score > result.threshold


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
def test_a_small_window_is_not_enough_data(detector: DriftDetector) -> None:
    result = detector.test(REFERENCE_COUNTS, BINS.count(REFERENCE[:20] + 3))
    assert not result.is_tested and not result.drifted and "not enough data" in result.reason


@pytest.mark.parametrize("detector", _detectors(), ids=lambda d: d.name)
@pytest.mark.parametrize("size", [50, 2000])
def test_null_false_alarms_stay_within_a_binomial_bound(detector: DriftDetector, size: int) -> None:
    draws = 300
    rng = np.random.default_rng(size)
    alarms = sum(
        detector.test(REFERENCE_COUNTS, BINS.count(rng.standard_normal(size))).drifted
        for _ in range(draws)
    )
    # alpha = 1 %: more than the binomial 99.9 % quantile would mean a miscalibrated test.
    assert alarms <= stats.binom.ppf(0.999, draws, 0.01)


def test_thresholds_shrink_as_windows_grow() -> None:
    detector = PSIDetector()
    rng = np.random.default_rng(3)
    small = detector.test(REFERENCE_COUNTS, BINS.count(rng.standard_normal(50)))
    large = detector.test(REFERENCE_COUNTS, BINS.count(rng.standard_normal(5000)))
    assert small.threshold is not None and large.threshold is not None
    assert large.threshold < small.threshold / 10


def test_benjamini_hochberg_rejects_the_step_up_set() -> None:
    assert benjamini_hochberg([0.001, 0.02, 0.03, 0.9], 0.1) == [True, True, True, False]
    assert benjamini_hochberg([0.02, 0.5], 0.01) == [False, False]


def test_a_correlation_flip_is_seen_only_by_the_multivariate_check() -> None:
    rng = np.random.default_rng(4)

    def rows(n: int, rho: float) -> dict[str, np.ndarray]:
        z = rng.standard_normal((n, 2))
        return {"a": z[:, 0], "b": rho * z[:, 0] + np.sqrt(1 - rho**2) * z[:, 1]}

    profile = build_profile(rows(10_000, 0.8))
    result = detect_drift(profile, profile.sketch(rows(1000, -0.8)))
    assert result.drifted
    assert not any(r.drifted for r in result.features.values())
    assert any(r.drifted for r in result.multivariate.values())
