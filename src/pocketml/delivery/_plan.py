"""Check-in plans: per model, its channel targeting and active rollout or experiment.

``build_plan`` reads them once per catalog load; ``CheckinPlan.select(device)`` is then a
pure, cheap function (a sha256 and the rules) that the delivery service adds to its
manifest cache key. See ``rollouts.py`` for the semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocketml.delivery._experiment_store import Experiment, ExperimentStore
from pocketml.delivery._rollout_store import Rollout, RolloutStore
from pocketml.delivery._types import CheckinFacts
from pocketml.delivery.targeting import Targeting, in_candidate_group, parse_targeting
from pocketml.errors import NotFound
from pocketml.protocol import CheckinChoice, arm_choice
from pocketml.registry import Registry, VersionInfo

__all__ = ["ACTIVE_STATES", "CheckinPlan", "ModelPlan", "build_plan"]

ACTIVE_STATES = ("running", "paused")


@dataclass(frozen=True)
class ModelPlan:
    """What check-in needs for one model: channel targeting and the active rollout."""

    targeting: Targeting | None
    rollout: Rollout | None
    rollout_targeting: Targeting
    candidate: VersionInfo | None
    experiment: Experiment | None = None
    arm_versions: tuple[tuple[str, VersionInfo], ...] = ()
    # (channel targeting matches, rollout targeting matches) per device profile: a fleet
    # has few distinct profiles, and 20 rules with version ranges cost ~15 us a device.
    _matches: dict[tuple[Any, ...], tuple[bool, bool]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def offers(self) -> dict[str, VersionInfo]:
        """Choice -> the version it serves besides the control: the rollout candidate
        (``CheckinChoice.CANDIDATE``) and each experiment arm (``arm_choice(n)``)."""
        out = dict(self.arm_versions)
        if self.candidate is not None:
            out[CheckinChoice.CANDIDATE] = self.candidate
        return out

    def select(self, device: CheckinFacts) -> str:
        """The device's ``CheckinChoice`` (nothing, control, rollout candidate) or the
        ``arm_choice`` of the experiment arm it is in."""
        channel_ok, rollout_ok = self._targeted(device)
        if not channel_ok:
            return CheckinChoice.NOTHING
        if self.experiment is not None:
            return arm_choice(self.experiment.arm_of(device.device_id).version)
        rollout = self.rollout
        if (
            rollout is not None
            and self.candidate is not None
            and rollout_ok
            and in_candidate_group(rollout.salt, device.device_id, rollout.percent)
        ):
            return CheckinChoice.CANDIDATE
        return CheckinChoice.CONTROL

    def _targeted(self, device: CheckinFacts) -> tuple[bool, bool]:
        key = device.profile_key()
        hit = self._matches.get(key)
        if hit is None:
            if len(self._matches) >= 10_000:  # bounded: a plan lives one catalog TTL
                self._matches.clear()
            hit = (
                self.targeting is None or self.targeting.matches(device),
                self.rollout_targeting.matches(device),
            )
            self._matches[key] = hit
        return hit


@dataclass(frozen=True)
class CheckinPlan:
    """Per model name, its ``ModelPlan`` (models without targeting or rollout are absent)."""

    models: dict[str, ModelPlan]

    def select(self, device: CheckinFacts) -> tuple[tuple[str, str], ...]:
        """The device's choice per planned model, sorted by model name (a cache key)."""
        return tuple((name, plan.select(device)) for name, plan in sorted(self.models.items()))


def build_plan(
    registry: Registry, store: RolloutStore, app_id: str, channel: str = "production"
) -> CheckinPlan:
    """What check-in needs for the app: targeting, active rollouts and experiments.

    Args:
        registry: the open registry (candidate and arm versions).
        store: the rollout store (targeting rows, rollouts).
        app_id: the app.
        channel: the channel ("production").

    Returns:
        The plan; models without targeting, rollout or experiment are absent.
    """
    targeting = store.targeting_of_app(app_id, channel)
    active = store.list_rollouts(app_id, states=ACTIVE_STATES)
    rollouts = {r.model_id: r for r in active if r.channel == channel}
    running = ExperimentStore(store.engine).list_experiments(app_id, running_only=True)
    experiments = {e.model_id: e for e in running if e.channel == channel}
    if not targeting and not rollouts and not experiments:
        return CheckinPlan({})
    names = {r.model_id: r.model for r in rollouts.values()}
    names.update({e.model_id: e.model for e in experiments.values()})
    if set(targeting) - set(names):
        page = registry.list_models(app_id, limit=1000, offset=0)
        names.update({m.id: m.name for m in page.items})
    models: dict[str, ModelPlan] = {}
    for model_id in set(targeting) | set(rollouts) | set(experiments):
        if model_id not in names:
            continue
        rollout = rollouts.get(model_id)
        candidate = None
        if rollout is not None:
            try:
                candidate = registry.get_version(app_id, rollout.model, rollout.candidate_version)
            except NotFound:
                rollout = None
        experiment = experiments.get(model_id)
        arm_versions: tuple[tuple[str, VersionInfo], ...] = ()
        if experiment is not None:
            try:
                arm_versions = tuple(
                    (
                        arm_choice(a.version),
                        registry.get_version(app_id, experiment.model, a.version),
                    )
                    for a in experiment.arms
                )
            except NotFound:
                experiment, arm_versions = None, ()
        rules = targeting.get(model_id)
        models[names[model_id]] = ModelPlan(
            targeting=parse_targeting(rules) if rules else None,
            rollout=rollout,
            rollout_targeting=parse_targeting(rollout.targeting) if rollout else Targeting(),
            candidate=candidate,
            experiment=experiment,
            arm_versions=arm_versions,
        )
    return CheckinPlan(models)
