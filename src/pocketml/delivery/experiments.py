"""A/B experiments: arms -> versions with weights, a primary metric, results with a 95 % CI.

A device's arm is fixed by its bucket (``sha256(salt + device_id) mod 10000``) falling in
the arm's share of the weights. The FIRST arm is the control: every other arm's result is
its difference from the control on the primary metric with a 95 % confidence interval
(normal approximation: unpooled Wald for rates, Welch for means) and both sample sizes.
Stopping can promote a version — a named one, or ``"winner"``: the arm whose interval
shows the largest improvement that excludes zero (no such arm: nothing is promoted).

An experiment and a rollout never run on the same model and channel at once: start and
stop run in one transaction under the model's row lock (like every rollout move), with
the check, the state change, the promotion of a stop and the audit row inside it.
"""

from __future__ import annotations

import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from pocketml.db import utcnow
from pocketml.delivery._experiment_store import Arm, Experiment, ExperimentStore
from pocketml.delivery.evaluator import arm_samples_by_version
from pocketml.delivery.guardrails import ArmSample
from pocketml.delivery.rollouts import RolloutService, _audit, _check_variants
from pocketml.errors import Conflict, InvalidInput
from pocketml.registry.transactions import promote_in

__all__ = [
    "METRICS",
    "Arm",
    "ArmResult",
    "Experiment",
    "ExperimentResults",
    "ExperimentService",
    "arm_result",
]

# metric -> +1 when higher is better, -1 when lower is better
METRICS: dict[str, int] = {
    "accuracy": 1,
    "mean_confidence": 1,
    "error_rate": -1,
    "cloud_share": -1,
    "latency_ms": -1,
}
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class ArmResult:
    """One arm on the primary metric; ``difference`` and the CI are vs the control arm."""

    name: str
    version: int
    n: int
    value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class ExperimentResults:
    """An experiment's results: one ``ArmResult`` per arm, control first."""

    experiment: Experiment
    arms: tuple[ArmResult, ...]

    def winner(self) -> int | None:
        """The version of the arm with the largest significant improvement, else None."""
        better = METRICS[self.experiment.metric]
        best: tuple[float, int] | None = None
        for arm in self.arms[1:]:
            if arm.difference is None or arm.ci_low is None or arm.ci_high is None:
                continue
            significant = arm.ci_low > 0 if better > 0 else arm.ci_high < 0
            gain = better * arm.difference
            if significant and (best is None or gain > best[0]):
                best = (gain, arm.version)
        return best[1] if best else None


def _observations(sample: ArmSample, metric: str) -> tuple[int, float | None, float | None]:
    """(n, value, variance of one observation) of ``metric`` in one arm."""
    if metric in ("mean_confidence", "latency_ms"):
        values = sample.confidences if metric == "mean_confidence" else sample.latencies
        if not values:
            return 0, None, None
        variance = float(np.var(values, ddof=1)) if len(values) > 1 else 0.0
        return len(values), float(np.mean(values)), variance
    x, n = {
        "accuracy": (sample.correct, sample.labelled),
        "error_rate": (sample.errors, sample.inferences + sample.errors),
        "cloud_share": (sample.cloud, sample.inferences),
    }[metric]
    if n == 0:
        return 0, None, None
    p = x / n
    return n, p, p * (1 - p)


def arm_result(arm: Arm, sample: ArmSample, control: ArmSample, metric: str) -> ArmResult:
    """The arm's value, its difference from the control and the difference's 95 % CI.

    Args:
        arm: the arm.
        sample: its telemetry. control: the control arm's telemetry.
        metric: one of ``METRICS``.

    Returns:
        The result; difference and CI are None when either arm has no observation.
    """
    n1, v1, var1 = _observations(sample, metric)
    n0, v0, var0 = _observations(control, metric)
    if v1 is None or v0 is None or var1 is None or var0 is None:
        return ArmResult(arm.name, arm.version, n1, v1, None, None, None)
    diff = v1 - v0
    half = _Z95 * math.sqrt(var1 / n1 + var0 / n0)
    return ArmResult(arm.name, arm.version, n1, v1, diff, diff - half, diff + half)


def _check_arms(arms: list[dict[str, Any]]) -> tuple[Arm, ...]:
    hint = 'Use e.g. [{"name": "control", "version": 3, "weight": 50}, {"name": "b", ...}].'
    if not 2 <= len(arms) <= 10:
        raise InvalidInput(f"an experiment needs 2 to 10 arms; got {len(arms)}. {hint}")
    out = []
    for i, raw in enumerate(arms):
        try:
            arm = Arm(str(raw["name"]), int(raw["version"]), float(raw.get("weight", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"arm {i} needs a name and a version; got {raw!r}. {hint}") from exc
        if not math.isfinite(arm.weight) or arm.weight <= 0 or not arm.name:
            raise InvalidInput(f"arm {i} needs a name and a weight > 0; got {raw!r}.")
        out.append(arm)
    if len({a.version for a in out}) != len(out) or len({a.name for a in out}) != len(out):
        raise InvalidInput(f"arms must have distinct names and versions; got {arms!r}.")
    return tuple(out)


class ExperimentService:
    """Starts, reports and stops A/B experiments; audits every change.

    Args:
        rollouts: the rollout service (registry, audit log, change notifications).
    """

    def __init__(self, rollouts: RolloutService) -> None:
        self.rollouts = rollouts
        self.registry = rollouts.registry
        self.store = ExperimentStore(rollouts.store.engine)

    def start(
        self,
        app_id: str,
        model: str,
        arms: list[dict[str, Any]],
        *,
        metric: str = "accuracy",
        channel: str = "production",
        actor: str = "admin",
        now: datetime | None = None,
    ) -> Experiment:
        """Start an experiment; devices are split across the arms by weight at once.

        Raises:
            NotFound: no such model or version.
            InvalidInput: bad arms, unknown metric or channel, a version without a device
                variant for the channel's targeted classes.
            Conflict: a rollout or another experiment is active on the model's channel.
        """
        if metric not in METRICS:
            raise InvalidInput(f"metric must be one of {', '.join(METRICS)}; got {metric!r}.")
        if channel != "production":
            raise InvalidInput(f"channel must be production; got {channel!r}.")
        checked = _check_arms(arms)
        info = self.registry.get_model(app_id, model)
        targeting = self.rollouts.get_targeting(app_id, model, channel=channel)
        for arm in checked:
            _check_variants(self.registry.get_version(app_id, model, arm.version), targeting)
        moment = now or utcnow()
        values = {
            "id": uuid.uuid4().hex,
            "app_id": app_id,
            "model_id": info.id,
            "model": model,
            "channel": channel,
            "state": "running",
            "arms": [{"name": a.name, "version": a.version, "weight": a.weight} for a in checked],
            "metric": metric,
            "salt": secrets.token_hex(16),
            "winner": None,
            "created_by": actor,
            "created_at": moment,
            "updated_at": moment,
        }
        audit = _audit(
            str(values["id"]), app_id, "experiment.start", None, "running", actor, "started", moment
        )
        audit["details"] = {"arms": values["arms"], "metric": metric}
        store = self.rollouts.store
        with store.model_transaction(app_id, "start the experiment", model_id=info.id) as (conn, _):
            if store.active_in(conn, info.id):
                raise Conflict(
                    f"model {model!r} has an active rollout; complete or roll it back before "
                    "starting an experiment."
                )
            self.store.insert_in(conn, values, audit)
        self.rollouts.notify_changed(app_id)
        return self.store.get(app_id, str(values["id"]))

    def get(self, app_id: str, experiment_id: str) -> Experiment:
        """One experiment. Raises NotFound."""
        return self.store.get(app_id, experiment_id)

    def list_experiments(self, app_id: str, *, running_only: bool = False) -> list[Experiment]:
        """The app's experiments, newest first."""
        return self.store.list_experiments(app_id, running_only=running_only)

    def results(
        self, app_id: str, experiment_id: str, *, now: datetime | None = None
    ) -> ExperimentResults:
        """Each arm on the primary metric since the experiment started (control first)."""
        experiment = self.store.get(app_id, experiment_id)
        until = experiment.updated_at if experiment.state == "stopped" else (now or utcnow())
        samples = arm_samples_by_version(
            self.rollouts.telemetry,
            app_id,
            experiment.model,
            [a.version for a in experiment.arms],
            experiment.created_at.timestamp(),
            until.timestamp() + (0 if experiment.state == "stopped" else 1e-6),
        )
        control = samples[experiment.arms[0].version]
        arms = tuple(
            arm_result(a, samples[a.version], control, experiment.metric) for a in experiment.arms
        )
        return ExperimentResults(experiment, arms)

    def stop(
        self,
        app_id: str,
        experiment_id: str,
        *,
        promote: int | str | None = None,
        actor: str = "admin",
        reason: str = "",
    ) -> ExperimentResults:
        """Stop an experiment; optionally promote a version (an arm's, or ``"winner"``).

        Raises:
            NotFound: no such experiment. Conflict: it is already stopped.
            InvalidInput: ``promote`` names a version that is not an arm.
        """
        results = self.results(app_id, experiment_id)
        experiment = results.experiment
        if experiment.state != "running":
            raise Conflict(f"cannot stop experiment {experiment_id}: it is {experiment.state}.")
        version = results.winner() if promote == "winner" else promote
        if version is not None and version not in {a.version for a in experiment.arms}:
            raise InvalidInput(
                f"promote must be 'winner' or the version of an arm "
                f"({', '.join(str(a.version) for a in experiment.arms)}); got {promote!r}."
            )
        audit = _audit(
            experiment.id, app_id, "experiment.stop", "running", "stopped", actor, reason, utcnow()
        )
        audit["details"] = {
            "promoted": version,
            "results": [vars(a) for a in results.arms],
        }
        store = self.rollouts.store
        with store.model_transaction(
            app_id, "stop the experiment", model_id=experiment.model_id
        ) as (conn, model):
            winner = int(version) if version is not None else None
            if not self.store.stop_in(conn, experiment, winner, audit):
                raise Conflict(f"experiment {experiment_id} was stopped by someone else first.")
            if winner is not None:
                promote_in(conn, model, winner)
        self.rollouts.notify_changed(app_id)
        return self.results(app_id, experiment_id)
