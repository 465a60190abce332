"""Alert rules: what to watch, when it counts as bad, how loudly to say so.

A rule is ``metric comparison threshold`` over a trailing ``window_s``, judged only with
at least ``min_n`` observations behind the value (fewer is "not enough data", never an
alarm). ``for_s`` keeps a breach pending that long before it fires (flapping guard);
``cooldown_s`` keeps a resolved alert from firing again that soon. ``scope`` narrows the
readings by label (``version``, ``device_class``); every other reading of the metric is an
alert of its own (one per version x device class), told apart by fingerprint.

``validate_rule`` is the one check (service, routes and CLI all reach it), and
``default_rules(model)`` is the starter set ``pocketml alerts rules --defaults MODEL``
creates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pocketml.errors import InvalidInput
from pocketml.limits import check_text

__all__ = [
    "COMPARISONS",
    "KNOWN_METRICS",
    "SCOPE_LABELS",
    "SEVERITIES",
    "AlertRule",
    "RuleSpec",
    "compare",
    "default_rules",
    "validate_rule",
]

COMPARISONS = (">", ">=", "<", "<=")
SEVERITIES = ("info", "warning", "critical")
SCOPE_LABELS = ("version", "device_class")

KNOWN_METRICS: dict[str, str] = {
    "latency_p95_ms": "95th percentile of reported inference latency, ms (telemetry)",
    "error_rate": "errors / (inferences + errors) (telemetry)",
    "fallback_share": "share of inferences answered locally because the cloud failed",
    "cloud_share": "share of inferences answered by the cloud (telemetry)",
    "accuracy_realised": "accuracy against label feedback (telemetry)",
    "accuracy_realised_drop": "the version's reference accuracy minus realised (model health)",
    "accuracy_realised_fall": "realised accuracy of the previous window minus this one's",
    "drift_share": "share of monitored features that drifted (model health)",
    "psi_max": "largest PSI over the features that drifted, 0 if none (model health)",
    "accuracy_estimated": "label-free accuracy estimate from confidence (model health)",
    "accuracy_estimated_drop": "reference accuracy minus the label-free estimate (model health)",
}
"""The metric names a rule may watch, with what they mean. A source the server registers
at start-up may add more (``MetricSources.register``)."""

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_MAX_WINDOW_S = 30 * 86400.0
_MAX_WAIT_S = 30 * 86400.0


@dataclass(frozen=True)
class RuleSpec:
    """What an operator declares (validated by ``validate_rule``)."""

    name: str
    metric: str
    comparison: str
    threshold: float
    window_s: float = 3600.0
    min_n: int = 100
    severity: str = "warning"
    for_s: float = 0.0
    cooldown_s: float = 1800.0
    scope: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    """A stored rule of one model of one app."""

    id: str
    app_id: str
    model: str
    name: str
    metric: str
    comparison: str
    threshold: float
    window_s: float
    min_n: int
    severity: str
    for_s: float
    cooldown_s: float
    scope: dict[str, str]
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601)."""
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data

    def describe(self) -> str:
        """``latency_p95_ms > 250 over 3600 s (n >= 200)``."""
        return (
            f"{self.metric} {self.comparison} {self.threshold:g} over {self.window_s:g} s "
            f"(n >= {self.min_n})"
        )


def compare(value: float, comparison: str, threshold: float) -> bool:
    """True when ``value comparison threshold`` holds (the rule is breached)."""
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    return value <= threshold


def _number(value: Any, name: str, low: float, high: float, shown: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number; got {value!r}.")
    if not low <= value <= high:
        bounds = shown or f"[{low:g}, {high:g}]"
        raise InvalidInput(f"{name} must be in {bounds}; got {value!r}.")
    return float(value)


def _scope(scope: Any) -> dict[str, str]:
    if not isinstance(scope, Mapping):
        raise InvalidInput(f"scope must be an object of labels; got {scope!r}.")
    unknown = sorted(set(scope) - set(SCOPE_LABELS))
    if unknown:
        raise InvalidInput(
            f"scope may hold only {', '.join(SCOPE_LABELS)}; got {', '.join(map(str, unknown))}."
        )
    result = {}
    for key, value in scope.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidInput(f"scope.{key} must be a string or an integer; got {value!r}.")
        text = str(value)
        if not 1 <= len(text) <= 64:
            raise InvalidInput(f"scope.{key} must have 1 to 64 characters; got {len(text)}.")
        result[key] = check_text(text)
    return result


def validate_rule(spec: RuleSpec, metrics: Iterable[str]) -> RuleSpec:
    """Check every field of ``spec``; returns it normalised (floats, scope as strings).

    Args:
        spec: the rule as declared.
        metrics: the metric names this server can read (``KNOWN_METRICS`` plus sources).

    Raises:
        InvalidInput: a field is out of its contract; the message names it.
    """
    if not isinstance(spec.name, str) or not _NAME.fullmatch(spec.name):
        raise InvalidInput(
            f"name must be 1-64 characters of a-z, 0-9, '_', '.', '-' starting with a letter "
            f"or digit; got {spec.name!r}."
        )
    names = sorted(set(metrics))
    if spec.metric not in names:
        raise InvalidInput(f"metric must be one of {', '.join(names)}; got {spec.metric!r}.")
    if spec.comparison not in COMPARISONS:
        raise InvalidInput(
            f"comparison must be one of {' '.join(COMPARISONS)}; got {spec.comparison!r}."
        )
    if spec.severity not in SEVERITIES:
        raise InvalidInput(
            f"severity must be one of {', '.join(SEVERITIES)}; got {spec.severity!r}."
        )
    if (
        isinstance(spec.min_n, bool)
        or not isinstance(spec.min_n, int)
        or not 1 <= spec.min_n <= 10**9
    ):
        raise InvalidInput(f"min_n must be an integer in [1, 1000000000]; got {spec.min_n!r}.")
    return RuleSpec(
        name=spec.name,
        metric=spec.metric,
        comparison=spec.comparison,
        threshold=_number(spec.threshold, "threshold", -1e12, 1e12, "[-10^12, 10^12]"),
        window_s=_number(spec.window_s, "window_s", 60.0, _MAX_WINDOW_S, "[60 s, 30 days]"),
        min_n=spec.min_n,
        severity=spec.severity,
        for_s=_number(spec.for_s, "for_s", 0.0, _MAX_WAIT_S, "[0 s, 30 days]"),
        cooldown_s=_number(spec.cooldown_s, "cooldown_s", 0.0, _MAX_WAIT_S, "[0 s, 30 days]"),
        scope=_scope(spec.scope),
    )


def default_rules() -> list[RuleSpec]:
    """The starter rules of a model (thresholds explained in docs/alerts.md).

    Drift and estimated accuracy judge the model's inputs and need no labels; realised
    accuracy waits for 100 labels; the operational ones wait 5 minutes before firing so a
    single slow burst does not page anyone.
    """
    return [
        RuleSpec("drift-share", "drift_share", ">", 0.3, 3600.0, 200, "warning"),
        RuleSpec("psi-max", "psi_max", ">", 0.25, 3600.0, 200, "warning"),
        RuleSpec(
            "accuracy-estimated-drop", "accuracy_estimated_drop", ">", 0.05, 3600.0, 200, "critical"
        ),
        RuleSpec(
            "accuracy-realised-drop", "accuracy_realised_drop", ">", 0.05, 86400.0, 100, "critical"
        ),
        RuleSpec("latency-p95", "latency_p95_ms", ">", 250.0, 900.0, 100, "warning", for_s=300.0),
        RuleSpec("error-rate", "error_rate", ">", 0.02, 900.0, 200, "critical", for_s=300.0),
        RuleSpec("fallback-share", "fallback_share", ">", 0.1, 900.0, 200, "warning", for_s=300.0),
    ]
