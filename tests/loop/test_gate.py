"""The gate on real ONNX files: two mlp digits models trained with pocketml.train."""

from __future__ import annotations

import numpy as np
from loop_kit import DigitsModels, samples_from

from pocketml.data import Dataset
from pocketml.loop import GatePolicy, LabelledSamples, Scorer, evaluate_gate, hold_out, onnx_scorer
from pocketml.schema import ModelSchema


def _golden(models: DigitsModels, rows: slice) -> Dataset:
    x, y = models.test_x[rows], models.test_y[rows]
    return Dataset("digits", x, y, tuple(str(i) for i in range(10)), layout="NCHW")


def _fresh(models: DigitsModels, rows: slice, classes: np.ndarray | None = None) -> LabelledSamples:
    x, y = models.test_x[rows], models.test_y[rows]
    devices = np.array([f"dev-{i % 7}" for i in range(len(y))])
    return samples_from(x, y, devices, device_class=classes, prefix="fresh")


def _scorers(models: DigitsModels) -> tuple[Scorer, Scorer]:
    schema = ModelSchema.from_dict(models.schema)
    return onnx_scorer(models.good, schema), onnx_scorer(models.poor, schema)


def _damaged(scorer: Scorer, rows: np.ndarray) -> Scorer:
    """``scorer`` answering the next class on the inputs in ``rows`` (a worse retrain)."""
    bad = {row.tobytes() for row in rows}

    def score(features: np.ndarray) -> np.ndarray:
        out = scorer(features)
        hit = np.array([row.tobytes() in bad for row in features], dtype=bool)
        out[hit] = np.roll(out[hit], 1, axis=1)
        return out

    return score


def test_a_better_candidate_is_blessed_after_an_alert(digits_models: DigitsModels) -> None:
    good, poor = _scorers(digits_models)

    result = evaluate_gate(
        good,
        poor,
        _golden(digits_models, slice(0, 300)),
        _fresh(digits_models, slice(300, 539)),
        trigger="alert",
        policy=GatePolicy(),
    )

    assert result.blessed, result.reason
    assert result.fresh.gain is not None and result.fresh.gain > 0.5
    assert result.fresh.ci_low is not None and result.fresh.ci_low > 0
    assert result.reason.startswith("blessed: fresh samples:")


def test_a_worse_candidate_is_rejected_with_its_numbers(digits_models: DigitsModels) -> None:
    good, poor = _scorers(digits_models)

    result = evaluate_gate(
        poor,
        good,
        _golden(digits_models, slice(0, 300)),
        _fresh(digits_models, slice(300, 539)),
        trigger="alert",
        policy=GatePolicy(),
    )

    assert not result.blessed
    assert result.golden.gain is not None and result.golden.gain < -0.5
    assert result.reason.startswith("rejected: ")
    assert "points" in result.reason
    failed = {c["name"] for c in result.checks if not c["passed"]}
    assert {"value:golden", "golden_change", "change"} <= failed


def test_a_schedule_trigger_accepts_an_equal_candidate_an_alert_does_not(
    digits_models: DigitsModels,
) -> None:
    good, _ = _scorers(digits_models)
    golden, fresh = _golden(digits_models, slice(0, 300)), _fresh(digits_models, slice(300, 539))

    scheduled = evaluate_gate(good, good, golden, fresh, trigger="schedule", policy=GatePolicy())
    alerted = evaluate_gate(good, good, golden, fresh, trigger="alert", policy=GatePolicy())

    assert scheduled.blessed, scheduled.reason
    assert not alerted.blessed
    assert "needs a gain" in alerted.reason


def test_a_scheduled_candidate_trailing_beyond_the_margin_is_rejected(
    digits_models: DigitsModels,
) -> None:
    good, _ = _scorers(digits_models)
    golden, fresh = _golden(digits_models, slice(0, 300)), _fresh(digits_models, slice(300, 539))
    worse = _damaged(good, fresh.features[:12])  # 12 of 240 fresh rows: -5 points at most

    tight = evaluate_gate(worse, good, golden, fresh, trigger="schedule", policy=GatePolicy())
    loose = evaluate_gate(
        worse, good, golden, fresh, trigger="schedule", policy=GatePolicy(schedule_margin=0.06)
    )

    assert not tight.blessed and "may trail" in tight.reason
    assert loose.blessed, loose.reason


def test_a_candidate_worse_in_one_device_class_is_rejected(digits_models: DigitsModels) -> None:
    good, _ = _scorers(digits_models)
    classes = np.array(["android-low"] * 80 + ["android-mid"] * 159)
    fresh = _fresh(digits_models, slice(300, 539), classes)
    worse = _damaged(good, fresh.features[:20])  # a quarter of the low class only

    result = evaluate_gate(
        worse,
        good,
        _golden(digits_models, slice(0, 300)),
        fresh,
        trigger="schedule",
        policy=GatePolicy(schedule_margin=0.2),
    )

    assert not result.blessed
    assert "device class android-low" in result.reason
    assert result.per_class["android-mid"].gain == 0.0


def test_the_gate_gives_the_same_numbers_twice(digits_models: DigitsModels) -> None:
    good, poor = _scorers(digits_models)
    golden, fresh = _golden(digits_models, slice(0, 300)), _fresh(digits_models, slice(300, 539))

    first = evaluate_gate(good, poor, golden, fresh, trigger="labels", policy=GatePolicy())
    second = evaluate_gate(good, poor, golden, fresh, trigger="labels", policy=GatePolicy())

    assert first.to_dict() == second.to_dict()


def test_hold_out_is_a_stable_share_by_sample_id(digits_models: DigitsModels) -> None:
    samples = _fresh(digits_models, slice(0, 500))

    train, fresh = hold_out(samples, 0.3)
    _, again_fresh = hold_out(samples.select(np.arange(499, -1, -1)), 0.3)

    assert len(train) + len(fresh) == 500
    assert 100 < len(fresh) < 200
    assert set(fresh.sample_id.tolist()) == set(again_fresh.sample_id.tolist())
    assert not set(train.sample_id.tolist()) & set(fresh.sample_id.tolist())
