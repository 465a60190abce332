"""The gate ("blessing"): may a candidate version replace the champion?

Candidate and champion answer the same three sets (docs/loop.md "The gate"):

(a) the **golden holdout** — the recipe's test split, which never enters training;
(b) **fresh samples** — trusted, labelled samples the job held out of training
    (``hold_out``: a deterministic share by ``sha256(sample_id)``);
(c) (b) **per device class**.

Rules, each a named check in the result:

- value: the candidate's accuracy on (a) and (b) is at least ``min_accuracy``;
- golden change: it loses at most ``max_drop`` against the champion on (a);
- fresh change: after an alert, labels or manual trigger the gain on (b) is at least
  ``required_gain`` AND the lower end of the paired bootstrap interval of the gain is
  above 0 (the improvement is not noise); after a schedule trigger the candidate may trail
  by ``schedule_margin`` (a routine retrain must not make things worse, need not be
  better). With fewer than ``min_fresh_samples`` fresh samples the rule reads (a);
- device classes: no class with ``min_class_samples`` fresh samples drops more than
  ``max_class_drop``.

The bootstrap is paired (both models' answers on the same resampled rows) and seeded, so
a gate run twice gives the same numbers. Models are scored by running their files
(``onnx_scorer``: ONNX Runtime through ``pocketml.runtime``, inputs normalized with the
model's schema), exactly what a device runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.data import Dataset
from pocketml.errors import InvalidInput
from pocketml.loop._policy import GatePolicy
from pocketml.loop._types import LabelledSamples
from pocketml.runtime import open_runner
from pocketml.schema import ModelSchema

__all__ = [
    "GateResult",
    "Scorer",
    "SetScore",
    "evaluate_gate",
    "hold_out",
    "onnx_scorer",
    "paired_bootstrap",
]

Scorer = Callable[[np.ndarray], np.ndarray]
"""Raw features (N, ...) in dataset units -> class probabilities (N, classes)."""

_BATCH = 512


def onnx_scorer(path: Path, schema: ModelSchema) -> Scorer:
    """A scorer running the ONNX file at ``path`` as a device would.

    Raw features are normalized with ``schema`` (``ModelSchema.normalize``); a ``logits``
    output is turned into probabilities.
    """
    runner = open_runner(path, "onnx")
    is_logits = schema.outputs[0].kind == "logits"

    def score(features: np.ndarray) -> np.ndarray:
        parts = []
        for start in range(0, len(features), _BATCH):
            batch = schema.normalize(features[start : start + _BATCH])
            out = np.asarray(runner.run(batch), dtype=np.float64).reshape(len(batch), -1)
            if is_logits:
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
            parts.append(out)
        if not parts:
            return np.zeros((0, len(schema.labels)))
        return np.concatenate(parts)

    return score


def hold_out(samples: LabelledSamples, share: float) -> tuple[LabelledSamples, LabelledSamples]:
    """Split samples into (training, fresh) by ``sha256(sample_id)``: the same sample is on
    the same side in every job, so a sample that was fresh once never trains a later gate's
    candidate by accident of order."""
    if not 0 < share < 1:
        raise InvalidInput(f"holdout share must be in (0, 1); got {share}")
    position = np.array(
        [
            int.from_bytes(hashlib.sha256(b"holdout:" + str(s).encode()).digest()[:8], "big")
            / 2**64
            for s in samples.sample_id
        ]
    )
    fresh = position < share if len(samples) else np.zeros(0, dtype=bool)
    return samples.select(~fresh), samples.select(fresh)


def paired_bootstrap(
    candidate_correct: np.ndarray,
    champion_correct: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """The percentile interval of accuracy(candidate) - accuracy(champion), rows paired."""
    diff = candidate_correct.astype(np.float64) - champion_correct.astype(np.float64)
    n = len(diff)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means[start : start + size] = diff[rng.integers(0, n, (size, n))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class SetScore:
    """Both models on one set: accuracies, the gain and its interval."""

    n: int
    candidate: float | None
    champion: float | None
    gain: float | None
    ci_low: float | None = None
    ci_high: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict with every number it used and the reason in one sentence."""

    blessed: bool
    reason: str
    trigger: str
    golden: SetScore
    fresh: SetScore
    per_class: dict[str, SetScore] = field(default_factory=dict)
    checks: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored with the job)."""
        return {
            "blessed": self.blessed,
            "reason": self.reason,
            "trigger": self.trigger,
            "golden": self.golden.to_dict(),
            "fresh": self.fresh.to_dict(),
            "per_class": {k: v.to_dict() for k, v in self.per_class.items()},
            "checks": list(self.checks),
        }


def _score(
    candidate: np.ndarray, champion: np.ndarray, labels: np.ndarray, policy: GatePolicy
) -> SetScore:
    n = len(labels)
    if n == 0:
        return SetScore(0, None, None, None)
    c_ok, k_ok = candidate == labels, champion == labels
    low, high = paired_bootstrap(
        c_ok,
        k_ok,
        resamples=policy.bootstrap,
        confidence=policy.confidence,
        seed=policy.seed,
    )
    acc_c, acc_k = float(c_ok.mean()), float(k_ok.mean())
    return SetScore(n, acc_c, acc_k, acc_c - acc_k, low, high)


def _predict(scorer: Scorer, features: np.ndarray) -> np.ndarray:
    if len(features) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(scorer(features)).argmax(axis=1)


def evaluate_gate(
    candidate: Scorer,
    champion: Scorer,
    golden: Dataset,
    fresh: LabelledSamples,
    *,
    trigger: str,
    policy: GatePolicy,
) -> GateResult:
    """Compare ``candidate`` with ``champion`` and bless it or not.

    Args:
        candidate: the new version's scorer. champion: the production version's.
        golden: the recipe's test split (raw dataset units).
        fresh: trusted labelled samples held out of training.
        trigger: what started the job (``TRIGGER_KINDS``); "schedule" uses the margin.
        policy: the thresholds.

    Returns:
        The verdict; ``reason`` names the first failed check with its numbers.
    """
    g_labels = np.asarray(golden.labels, dtype=np.int64)
    golden_score = _score(
        _predict(candidate, golden.features), _predict(champion, golden.features), g_labels, policy
    )
    f_labels = fresh.labels.astype(np.int64)
    f_cand, f_champ = _predict(candidate, fresh.features), _predict(champion, fresh.features)
    fresh_score = _score(f_cand, f_champ, f_labels, policy)
    per_class: dict[str, SetScore] = {}
    classes = fresh.device_class.astype(str)
    for name in sorted(set(classes.tolist())):
        rows = classes == name
        per_class[name] = _score(f_cand[rows], f_champ[rows], f_labels[rows], policy)

    checks: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append({"name": name, "passed": bool(passed), "detail": detail})

    drop = golden_score.gain if golden_score.gain is not None else 0.0
    check(
        "golden_change",
        drop >= -policy.max_drop,
        f"golden holdout accuracy {_pct(golden_score.candidate)} vs champion "
        f"{_pct(golden_score.champion)} ({_pts(drop)}; allowed drop "
        f"{_pts(policy.max_drop, signed=False)})",
    )
    _change_check(check, golden_score, fresh_score, trigger, policy)
    _value_checks(check, golden_score, fresh_score, policy)
    for name, score in per_class.items():
        if score.n < policy.min_class_samples or score.gain is None:
            continue
        check(
            f"class:{name}",
            score.gain >= -policy.max_class_drop,
            f"device class {name}: {_pct(score.candidate)} vs {_pct(score.champion)} "
            f"({_pts(score.gain)} on {score.n}; allowed drop "
            f"{_pts(policy.max_class_drop, signed=False)})",
        )
    failed = [c for c in checks if not c["passed"]]
    blessed = not failed
    if blessed:
        reason = "blessed: " + "; ".join(c["detail"] for c in checks if c["name"] == "change")
    else:
        reason = "rejected: " + failed[0]["detail"]
    return GateResult(blessed, reason, trigger, golden_score, fresh_score, per_class, tuple(checks))


def _value_checks(
    check: Callable[[str, bool, str], None],
    golden: SetScore,
    fresh: SetScore,
    policy: GatePolicy,
) -> None:
    for name, score in (("golden", golden), ("fresh", fresh)):
        if score.candidate is None:
            continue
        check(
            f"value:{name}",
            score.candidate >= policy.min_accuracy,
            f"{name} accuracy {_pct(score.candidate)} (minimum {_pct(policy.min_accuracy)})",
        )


def _change_check(
    check: Callable[[str, bool, str], None],
    golden: SetScore,
    fresh: SetScore,
    trigger: str,
    policy: GatePolicy,
) -> None:
    use_fresh = fresh.n >= policy.min_fresh_samples
    score, where = (fresh, "fresh samples") if use_fresh else (golden, "golden holdout")
    gain = score.gain if score.gain is not None else 0.0
    interval = f"{_num(score.ci_low)} to {_num(score.ci_high)} points"
    if trigger == "schedule":
        passed = gain >= -policy.schedule_margin
        detail = (
            f"{where}: {_pct(score.candidate)} vs champion {_pct(score.champion)} "
            f"({_pts(gain)}, {policy.confidence:.0%} CI {interval}; a scheduled retrain may "
            f"trail by {_pts(policy.schedule_margin, signed=False)})"
        )
    else:
        ci_low = score.ci_low if score.ci_low is not None else -1.0
        passed = gain >= policy.required_gain and ci_low > 0
        detail = (
            f"{where}: {_pct(score.candidate)} vs champion {_pct(score.champion)} "
            f"({_pts(gain)}, {policy.confidence:.0%} CI {interval}; the {trigger} trigger "
            f"needs a gain of {_pts(policy.required_gain, signed=False)} with the interval above 0)"
        )
    check("change", passed, detail)


def _pct(value: float | None, *, signed: bool = False) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value * 100:+.1f}"


def _pts(value: float, *, signed: bool = True) -> str:
    return f"{value * 100:+.1f} points" if signed else f"{value * 100:.1f} points"
