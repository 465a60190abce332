"""Demo chapter "Ship safely": a staged rollout, an automatic rollback, an A/B test.

1. v2, a reproducible rebuild of the production recipe (same data, seed and augmentation,
   hence the same model), rolls out 10 % -> 100 % to the simulated fleet while the
   in-server evaluator watches guardrails; it completes and becomes production. (A retrain
   with another seed can be a few points worse on low-light digits — the guardrail then
   rightly stops it, which is not the scene this step is meant to show.)
2. A deliberately worse model (v3: trained without the low-light augmentation) starts the
   same way; the phones in its 10 % report telemetry and their users' corrections, the
   guardrail sees accuracy collapse and rolls it back by itself, with the numbers.
3. A short A/B test between two good versions reports the difference with a 95 % CI.

The fleet runs the device models only (policy ``local``) so the comparison is between
models, and every prediction is followed by the user's feedback with the true label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from pocketml._tables import Column, fitted_table
from pocketml.convert import convert_model
from pocketml.convert.build import VariantGroup, write_build
from pocketml.data import Dataset, Splits, augment_dataset, parse_augmentations
from pocketml.demo._devices import monitoring_reference
from pocketml.server.client import AdminClient
from pocketml.sim import make_fleet, run_fleet
from pocketml.sketch import profile_model
from pocketml.train import TrainConfig, TrainResult, model_inputs, train

__all__ = ["ship_safely"]

NETWORKS = ("wifi", "4g", "3g", "lossy")
_SETTLED = {"completed", "rolled_back", "paused"}


# This chapter's phones replay the same 30 photos: sketches of them would measure the demo,
# not the world, so its versions send none (chapter 7 watched the world with its own fleet).
_NOT_WATCHED = {"enabled": False}


def _push_model(
    admin: AdminClient,
    run: TrainResult,
    out_dir: Path,
    reference: Dataset,
    *,
    stage: str = "candidate",
) -> int:
    """Convert ``run``'s model (ONNX, ORT, TFLite), push it with its reference profile (of
    ``reference``), return the version number."""
    results = convert_model(
        run.model,
        ["onnx", "ort", "tflite"],
        out_dir / "cnn-small",
        samples=model_inputs(run.model, run.splits.test),
        labels=run.splits.test.labels,
    )
    group = VariantGroup("cnn-small", "device", "pytorch", results, run.metrics)
    write_build(
        out_dir,
        schema=run.model.schema,
        groups=[group],
        run_record=run.record.to_dict(),
        profile=profile_model(run.model, reference),
    )
    version = admin.push_build(out_dir, stage=stage)
    admin.set_policy("digits", version.version, hybrid={"mode": "local"}, monitor=_NOT_WATCHED)
    return version.version


def _judged(admin: AdminClient, rollout_id: str, after: datetime, timeout_s: float) -> Any:
    """Poll until the in-server evaluator has looked at the rollout since ``after``.

    A pass that started after the fleet finished has seen all of its telemetry: the
    rollout then either moved (advanced, completed, rolled back) or needs more data.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        rollout = admin.show_rollout(rollout_id)
        seen = False
        if rollout.evaluated_at is not None:
            at = datetime.fromisoformat(rollout.evaluated_at)
            seen = (at if at.tzinfo else at.replace(tzinfo=UTC)) >= after
        if rollout.state in _SETTLED or seen or time.monotonic() > deadline:
            return rollout
        time.sleep(0.2)


def _run_until_settled(
    admin: AdminClient,
    rollout: Any,
    fleet: Callable[[int], None],
    rounds: int,
) -> Any:
    """Let the fleet report round after round until the evaluator settles the rollout.

    Each round is one fleet run (every phone checks in, predicts, sends telemetry and
    feedback); a small candidate group may need several rounds before the guardrails
    have ``min_samples`` inferences to judge. At most ``rounds`` rounds.
    """
    for round_ in range(rounds):
        fleet(round_)
        rollout = _judged(admin, rollout.id, datetime.now(UTC), timeout_s=20)
        if rollout.state in _SETTLED:
            break
    return rollout


def _settle(admin: AdminClient, rollout: Any, action: str) -> Any:
    """End a rollout the evaluator has not decided yet (a fleet too small to judge)."""
    if rollout.state in _SETTLED:
        return rollout
    return admin.move_rollout(
        rollout.id, action, reason="demo: the fleet ended before the guardrails had enough data"
    )


def _path(admin: AdminClient, rollout_id: str) -> str:
    """The rollout's transitions from the audit log: 'start 10 % → advance 100 % → complete'."""
    entries = sorted(admin.audit(subject=rollout_id, limit=50).items, key=lambda e: e.id)
    return " → ".join(f"{e.action} ({e.actor})" for e in entries)


def _fleet(url: str, key: str, test: Dataset, work: Path, devices: int, seed: int) -> None:
    fleet = make_fleet(devices, NETWORKS, seed=seed)
    run_fleet(
        url, key, fleet, test.features, work, labels=test.labels, feedback_labels=test.class_names
    )


def ship_safely(
    console: Console,
    *,
    url: str,
    admin: AdminClient,
    device_key: str,
    splits: Splits,
    evaluation: Dataset,
    train_augment: str,
    low_light: str,
    epochs: int,
    devices: int,
    samples_per_device: int,
    schedule: tuple[float, ...],
    min_samples: int,
    out_dir: Path,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the three scenes; print what happened; return the numbers."""
    admin.set_policy("digits", 1, hybrid={"mode": "local"}, monitor=_NOT_WATCHED)
    test = augment_dataset(evaluation, parse_augmentations(low_light), seed=seed + 7)
    test = test.subset(np.arange(min(samples_per_device, len(test))))
    augment = tuple(parse_augmentations(train_augment))
    good = train(
        splits, "cnn-small", config=TrainConfig(seed=seed, epochs=epochs, augmentations=augment)
    )
    worse = train(splits, "cnn-small", config=TrainConfig(seed=seed, epochs=epochs))
    report: dict[str, Any] = {}

    # 1. a good version rolls out step by step
    reference = monitoring_reference(splits, low_light, seed=seed)
    v2 = _push_model(admin, good, out_dir / "v2", reference)
    rollout = admin.create_rollout(
        "digits",
        v2,
        schedule=list(schedule),
        min_dwell_s=0,
        min_samples=min_samples,
        on_breach="rollback",
    )
    rollout = _run_until_settled(
        admin,
        rollout,
        lambda r: _fleet(
            url, device_key, test, out_dir / "fleet-rollout" / str(r), devices, seed + r
        ),
        rounds=len(schedule) + 4,
    )
    rollout = _settle(admin, rollout, "complete")
    console.print(f"   v2 (the production recipe rebuilt): {_path(admin, rollout.id)}")
    report["good_rollout"] = {"version": v2, "state": rollout.state}

    # 2. a worse version is caught by its guardrails and rolled back by the evaluator
    v3 = _push_model(admin, worse, out_dir / "v3", reference)
    bad = admin.create_rollout(
        "digits",
        v3,
        schedule=list(schedule),
        min_dwell_s=0,
        min_samples=min_samples,
        on_breach="rollback",
    )
    bad = _run_until_settled(
        admin,
        bad,
        lambda r: _fleet(
            url, device_key, test, out_dir / "fleet-bad" / str(r), devices, seed + 11 + r
        ),
        rounds=4,
    )
    bad = _settle(admin, bad, "rollback")
    columns = (
        Column("guardrail", is_name=True),
        Column("status"),
        Column("candidate v3", "right"),
        Column("control", "right"),
        Column("n (v3/control)", "right", priority=2),
        Column("test", is_name=True, priority=1),
        Column("p", "right"),
    )
    rows = [
        (
            g.metric,
            g.status,
            _num(g.candidate),
            _num(g.control),
            f"{g.n_candidate}/{g.n_control}",
            g.test,
            "-" if g.p_value is None else f"{g.p_value:.2g}",
        )
        for g in bad.metrics
    ]
    table = fitted_table(
        f"v3 (trained without low-light augmentation): {bad.state}", columns, rows, console.width
    )
    console.print(table)
    last = admin.audit(subject=bad.id, limit=1).items
    if last:
        console.print(f"   audit: {last[0].actor} → {last[0].action}: {last[0].reason}")
    report["bad_rollout"] = {
        "version": v3,
        "state": bad.state,
        "guardrails": [g.model_dump() for g in bad.metrics],
    }

    # 3. an A/B test between two good versions
    production = v2 if rollout.state == "completed" else 1
    other = 1 if production == v2 else v2
    experiment = admin.start_experiment(
        "digits",
        [
            {"name": "control", "version": production, "weight": 50},
            {"name": "challenger", "version": other, "weight": 50},
        ],
        metric="accuracy",
    )
    _fleet(url, device_key, test, out_dir / "fleet-ab", devices, seed + 21)
    experiment = admin.show_experiment(experiment.id)
    admin.stop_experiment(experiment.id, promote=None, reason="demo: a short test")
    arms = [a.model_dump() for a in experiment.arms]
    console.print(f"   A/B test v{production} (control) vs v{other} on accuracy from feedback:")
    for index, arm in enumerate(arms):
        console.print("     " + _arm_sentence(arm, is_control=index == 0))
    report["experiment"] = {"control": production, "challenger": other, "arms": arms}
    return report


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _arm_sentence(arm: dict[str, Any], *, is_control: bool) -> str:
    value = "-" if arm["value"] is None else f"{arm['value']:.4f}"
    text = f"{arm['name']} v{arm['version']}: {value} (n={arm['n']})"
    if not is_control and arm["difference"] is not None and arm["ci_low"] is not None:
        text += (
            f", difference {arm['difference']:+.4f}, "
            f"95 % CI [{arm['ci_low']:+.4f}, {arm['ci_high']:+.4f}]"
        )
        significant = arm["ci_low"] > 0 or arm["ci_high"] < 0
        text += (
            " — significant" if significant else " — the CI includes 0: no significant difference"
        )
    return text
