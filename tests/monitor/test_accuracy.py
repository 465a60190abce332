"""Label-free accuracy from a calibrated model's confidences, realised accuracy, concept drift."""

from __future__ import annotations

import numpy as np

from pocketml.monitor import (
    build_profile,
    compare_accuracy,
    estimate_accuracy,
    realised_accuracy,
)


def _calibrated(n: int, rng: np.random.Generator, low: float, high: float):  # type: ignore[no-untyped-def]
    confidence = rng.uniform(low, high, n)
    correct = rng.random(n) < confidence  # calibrated: right with probability = confidence
    return {"x": rng.standard_normal(n)}, confidence, correct


def test_the_estimate_on_a_shifted_calibrated_model_covers_the_truth() -> None:
    rng = np.random.default_rng(0)
    rows, confidence, correct = _calibrated(20_000, rng, 0.5, 1.0)
    profile = build_profile(rows, confidence=confidence, correct=correct)
    # The world shifts: the window is harder (lower confidences), the relation holds.
    window, window_conf, window_correct = _calibrated(3000, rng, 0.3, 0.8)
    estimate = estimate_accuracy(profile, profile.sketch(window, confidence=window_conf))
    truth = float(window_correct.mean())
    assert estimate.contains(truth)
    assert abs(estimate.value - 0.55) < 0.03  # it followed the shift (reference: 0.75)


def test_wilson_interval_matches_a_known_value() -> None:
    interval = realised_accuracy(81, 100)
    assert (
        abs(interval.low - 0.7222) < 1e-3 and abs(interval.high - 0.8748) < 1e-3
    )  # (p + z²/2n ± z√(p(1-p)/n + z²/4n²)) / (1 + z²/n)


def test_concept_drift_is_flagged_when_labels_disagree_with_the_estimate() -> None:
    rng = np.random.default_rng(1)
    rows, confidence, correct = _calibrated(20_000, rng, 0.5, 1.0)
    profile = build_profile(rows, confidence=confidence, correct=correct)
    window, window_conf, _ = _calibrated(2000, rng, 0.5, 1.0)
    estimate = estimate_accuracy(profile, profile.sketch(window, confidence=window_conf))
    agreeing = compare_accuracy(estimate, realised_accuracy(740, 1000))
    diverging = compare_accuracy(estimate, realised_accuracy(550, 1000))
    assert not agreeing.is_concept_drift
    assert diverging.is_concept_drift and diverging.gap < -0.15
