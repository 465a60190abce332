"""Guardrails: candidate vs control telemetry over one window, each metric with a test.

Five metrics, each with a threshold (the effect that matters), a minimum sample size per
arm, and a one-sided statistical test at level ``alpha``. A metric BREACHES only when both
arms have at least ``min_samples`` observations, the effect is beyond the threshold, AND
the test rejects "no harm" (p < alpha); below the sample size it is ``insufficient`` and
never acts, so noise on a handful of events cannot roll a release back.

| metric | value | breach when | test |
| --- | --- | --- | --- |
| latency_p95_ratio | p95(candidate) / p95(control) | ratio > threshold | Mann-Whitney U (greater) |
| error_rate | errors / (inferences + errors) | cand - ctrl > threshold | two-proportion z |
| mean_confidence | mean top probability | ctrl - cand > threshold | Mann-Whitney U (less) |
| accuracy | correct / labelled (feedback) | ctrl - cand > threshold | two-proportion z |
| cloud_share | cloud inferences / inferences | cand - ctrl > threshold | two-proportion z |
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc

from pocketml.errors import InvalidInput, MissingDependencyError
from pocketml.telemetry import EventRows

__all__ = [
    "DEFAULT_GUARDRAILS",
    "ArmSample",
    "GuardrailResult",
    "GuardrailSpec",
    "evaluate_guardrails",
    "mann_whitney_p",
    "parse_guardrails",
    "two_proportion_p",
]

DEFAULT_GUARDRAILS: dict[str, float] = {
    "latency_p95_ratio": 1.25,
    "error_rate": 0.02,
    "mean_confidence": 0.05,
    "accuracy": 0.03,
    "cloud_share": 0.10,
}
_DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class GuardrailSpec:
    """Thresholds per metric, the minimum sample size per arm, and the test level."""

    thresholds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_GUARDRAILS))
    min_samples: int = 200
    alpha: float = _DEFAULT_ALPHA

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``parse_guardrails`` reads back)."""
        return {"thresholds": dict(self.thresholds), "alpha": self.alpha}


def parse_guardrails(raw: Mapping[str, Any] | None, min_samples: int) -> GuardrailSpec:
    """Validate ``{"thresholds": {metric: value}, "alpha": 0.01}`` (missing: defaults).

    Raises:
        InvalidInput: an unknown metric, a non-positive threshold, or alpha outside (0, 0.5).
    """
    raw = dict(raw or {})
    unknown = set(raw) - {"thresholds", "alpha"}
    if unknown:
        raise InvalidInput(f"guardrails take 'thresholds' and 'alpha'; got {sorted(unknown)}.")
    thresholds = dict(DEFAULT_GUARDRAILS)
    for metric, value in dict(raw.get("thresholds") or {}).items():
        if metric not in DEFAULT_GUARDRAILS:
            raise InvalidInput(
                f"guardrail metric must be one of {', '.join(DEFAULT_GUARDRAILS)}; got {metric!r}."
            )
        if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
            raise InvalidInput(
                f"guardrail threshold of {metric} must be a positive number; got {value!r}."
            )
        thresholds[metric] = float(value)
    alpha = raw.get("alpha", _DEFAULT_ALPHA)
    if not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise InvalidInput(f"guardrail alpha must be in (0, 0.5), e.g. 0.01; got {alpha!r}.")
    return GuardrailSpec(thresholds=thresholds, min_samples=min_samples, alpha=float(alpha))


@dataclass(frozen=True)
class ArmSample:
    """The telemetry of one arm (candidate or control) over the evaluation window."""

    inferences: int = 0
    errors: int = 0
    cloud: int = 0
    labelled: int = 0
    correct: int = 0
    latencies: tuple[float, ...] = ()
    confidences: tuple[float, ...] = ()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[Any, ...]]) -> ArmSample:
        """Build from rows (type, source, latency_ms, confidence, label, feedback_label)."""
        counts = {"inferences": 0, "errors": 0, "cloud": 0, "labelled": 0, "correct": 0}
        latencies: list[float] = []
        confidences: list[float] = []
        for kind, source, latency, confidence, label, truth in rows:
            if kind == "error":
                counts["errors"] += 1
                continue
            counts["inferences"] += 1
            counts["cloud"] += source == "cloud"
            if latency is not None:
                latencies.append(float(latency))
            if confidence is not None:
                confidences.append(float(confidence))
            if truth is not None and label is not None:
                counts["labelled"] += 1
                counts["correct"] += truth == label
        return cls(**counts, latencies=tuple(latencies), confidences=tuple(confidences))

    @classmethod
    def from_events(cls, events: EventRows) -> ArmSample:
        """``from_rows`` of the events' (type, source, latency, confidence, label,
        feedback label), computed column-wise."""
        inference = pc.fill_null(pc.equal(events.type, "inference"), False)
        kept = events.filter(inference)
        latencies = kept.latency_ms.drop_null().to_pylist()
        confidences = kept.confidence.drop_null().to_pylist()
        labelled = pc.and_(kept.feedback_label.is_valid(), kept.label.is_valid())
        correct = pc.fill_null(pc.equal(kept.label, kept.feedback_label), False)
        return cls(
            inferences=len(kept),
            errors=len(events) - len(kept),
            cloud=int(pc.sum(pc.fill_null(pc.equal(kept.source, "cloud"), False)).as_py() or 0),
            labelled=int(pc.sum(labelled).as_py() or 0),
            correct=int(pc.sum(correct).as_py() or 0),
            latencies=tuple(float(x) for x in latencies),
            confidences=tuple(float(x) for x in confidences),
        )


@dataclass(frozen=True)
class GuardrailResult:
    """One metric's verdict: ``ok``, ``breach`` or ``insufficient`` (too few samples)."""

    metric: str
    status: str
    candidate: float | None
    control: float | None
    n_candidate: int
    n_control: int
    threshold: float
    test: str
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def two_proportion_p(x1: int, n1: int, x2: int, n2: int, alternative: str) -> float:
    """One-sided p-value of the pooled two-proportion z-test of p1 vs p2.

    Args:
        x1: successes in arm 1 (candidate). n1: its trials.
        x2: successes in arm 2 (control). n2: its trials.
        alternative: ``"greater"`` (H1: p1 > p2) or ``"less"``.

    Returns:
        The p-value (1.0 when there is no variance to test).
    """
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    if alternative == "less":
        z = -z
    return 0.5 * math.erfc(z / math.sqrt(2))


def mann_whitney_p(a: tuple[float, ...], b: tuple[float, ...], alternative: str) -> float:
    """One-sided Mann-Whitney U p-value (H1: ``a`` tends to be greater/less than ``b``).

    Raises:
        MissingDependencyError: scipy is not installed.
    """
    try:
        from scipy.stats import mannwhitneyu
    except ImportError as exc:  # pragma: no cover - scipy ships with scikit-learn
        raise MissingDependencyError("scipy", "server", "rollout guardrails") from exc
    if not a or not b:
        return 1.0
    return float(mannwhitneyu(a, b, alternative=alternative, method="asymptotic").pvalue)


def _rate(x: int, n: int) -> float | None:
    return x / n if n else None


def _result(
    metric: str,
    spec: GuardrailSpec,
    values: tuple[float | None, float | None],
    sizes: tuple[int, int],
    harm: float | None,
    test: str,
    p_value: float | None,
) -> GuardrailResult:
    threshold = spec.thresholds[metric]
    if min(sizes) < spec.min_samples or harm is None or p_value is None:
        status = "insufficient"
    elif harm > threshold and p_value < spec.alpha:
        status = "breach"
    else:
        status = "ok"
    return GuardrailResult(metric, status, *values, *sizes, threshold, test, p_value)


def evaluate_guardrails(
    candidate: ArmSample, control: ArmSample, spec: GuardrailSpec
) -> list[GuardrailResult]:
    """Compare the arms on every metric of ``spec`` (see the module table).

    Args:
        candidate: the candidate group's telemetry over the window.
        control: the control group's telemetry over the same window.
        spec: thresholds, minimum samples per arm, alpha.

    Returns:
        One result per metric, in a fixed order.
    """
    results = []
    c, k = candidate, control
    enough_lat = min(len(c.latencies), len(k.latencies)) >= spec.min_samples
    if "latency_p95_ratio" in spec.thresholds:
        p95c = float(np.percentile(c.latencies, 95)) if c.latencies else None
        p95k = float(np.percentile(k.latencies, 95)) if k.latencies else None
        ratio = p95c / p95k if p95c is not None and p95k else None
        p = mann_whitney_p(c.latencies, k.latencies, "greater") if enough_lat else None
        results.append(
            _result(
                "latency_p95_ratio",
                spec,
                (p95c, p95k),
                (len(c.latencies), len(k.latencies)),
                ratio,
                "mann-whitney-u",
                p,
            )
        )
    if "mean_confidence" in spec.thresholds:
        mc = float(np.mean(c.confidences)) if c.confidences else None
        mk = float(np.mean(k.confidences)) if k.confidences else None
        enough = min(len(c.confidences), len(k.confidences)) >= spec.min_samples
        p = mann_whitney_p(c.confidences, k.confidences, "less") if enough else None
        harm = mk - mc if mc is not None and mk is not None else None
        sizes = (len(c.confidences), len(k.confidences))
        results.append(_result("mean_confidence", spec, (mc, mk), sizes, harm, "mann-whitney-u", p))
    proportions = {
        # metric: (x_cand, n_cand, x_ctrl, n_ctrl, alternative that means harm)
        "error_rate": (c.errors, c.inferences + c.errors, k.errors, k.inferences + k.errors, 1),
        "accuracy": (c.correct, c.labelled, k.correct, k.labelled, -1),
        "cloud_share": (c.cloud, c.inferences, k.cloud, k.inferences, 1),
    }
    for metric, (x1, n1, x2, n2, sign) in proportions.items():
        if metric not in spec.thresholds:
            continue
        r1, r2 = _rate(x1, n1), _rate(x2, n2)
        harm = sign * (r1 - r2) if r1 is not None and r2 is not None else None
        p = two_proportion_p(x1, n1, x2, n2, "greater" if sign > 0 else "less")
        results.append(_result(metric, spec, (r1, r2), (n1, n2), harm, "two-proportion-z", p))
    return results
