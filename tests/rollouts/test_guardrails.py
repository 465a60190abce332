"""Guardrail statistics: constructed breaches are caught, noise does not roll back."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.delivery import ArmSample, GuardrailSpec, evaluate_guardrails, parse_guardrails
from pocketml.delivery.guardrails import two_proportion_p
from pocketml.errors import InvalidInput


def _arm(
    rng: np.random.Generator,
    n: int,
    *,
    latency: float = 20.0,
    error: float = 0.01,
    conf: float = 0.9,
    cloud: float = 0.1,
    acc: float = 0.9,
) -> ArmSample:
    errors = int(rng.binomial(n, error))
    labelled = n // 2
    return ArmSample(
        inferences=n,
        errors=errors,
        cloud=int(rng.binomial(n, cloud)),
        labelled=labelled,
        correct=int(rng.binomial(labelled, acc)),
        latencies=tuple(rng.lognormal(np.log(latency), 0.3, n)),
        confidences=tuple(np.clip(rng.normal(conf, 0.05, n), 0, 1)),
    )


def _status(results: list, metric: str) -> str:
    return next(r.status for r in results if r.metric == metric)


def test_two_proportion_p_is_small_for_a_real_difference_and_one_sided() -> None:
    assert two_proportion_p(60, 1000, 10, 1000, "greater") < 1e-6
    assert two_proportion_p(60, 1000, 10, 1000, "less") > 0.99
    assert two_proportion_p(0, 100, 0, 100, "greater") == 1.0


@pytest.mark.parametrize(
    ("metric", "candidate"),
    [
        ("latency_p95_ratio", {"latency": 40.0}),
        ("error_rate", {"error": 0.08}),
        ("mean_confidence", {"conf": 0.7}),
        ("accuracy", {"acc": 0.7}),
        ("cloud_share", {"cloud": 0.4}),
    ],
)
def test_a_constructed_regression_breaches_its_metric(metric: str, candidate: dict) -> None:
    rng = np.random.default_rng(7)
    results = evaluate_guardrails(
        _arm(rng, 1000, **candidate), _arm(rng, 1000), GuardrailSpec(min_samples=200)
    )
    assert _status(results, metric) == "breach"
    breach = next(r for r in results if r.metric == metric)
    assert breach.p_value is not None and breach.p_value < 0.01


def test_a_regression_below_the_minimum_sample_size_is_insufficient_not_a_breach() -> None:
    rng = np.random.default_rng(3)
    results = evaluate_guardrails(
        _arm(rng, 50, error=0.3, latency=80.0), _arm(rng, 50), GuardrailSpec(min_samples=200)
    )
    assert {r.status for r in results} == {"insufficient"}


def _false_alarm_rate(n: int, draws: int = 500) -> float:
    rng = np.random.default_rng(2026)
    spec = GuardrailSpec(min_samples=200)
    alarms = 0
    for _ in range(draws):
        results = evaluate_guardrails(_arm(rng, n), _arm(rng, n), spec)
        alarms += any(r.status == "breach" for r in results)
    return alarms / draws


def test_noise_below_the_minimum_sample_size_never_breaches() -> None:
    assert _false_alarm_rate(60) == 0.0


def test_noise_above_the_minimum_sample_size_rarely_breaches() -> None:
    rate = _false_alarm_rate(300)
    print(f"false-alarm rate, identical arms, n=300, 500 draws: {rate:.3f}")
    assert rate < 0.10


def test_guardrail_settings_are_validated() -> None:
    assert (
        parse_guardrails({"thresholds": {"error_rate": 0.05}}, 10).thresholds["error_rate"] == 0.05
    )
    with pytest.raises(InvalidInput, match="metric must be one of"):
        parse_guardrails({"thresholds": {"p99": 1}}, 10)
    with pytest.raises(InvalidInput, match="positive number"):
        parse_guardrails({"thresholds": {"accuracy": -1}}, 10)
    with pytest.raises(InvalidInput, match="alpha"):
        parse_guardrails({"alpha": 0.9}, 10)
