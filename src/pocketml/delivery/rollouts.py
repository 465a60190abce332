"""Staged rollouts: a candidate version moving into a model's channel, step by step.

The state machine (every other move is refused with ``Conflict`` naming the state)::

    create -> running --advance--> running (next step of the schedule)
              running --pause----> paused --resume--> running
              running|paused --rollback--> rolled_back   (terminal)
              running|paused --complete--> completed     (terminal; candidate promoted)

Check-in semantics (``CheckinPlan``): for each model with channel targeting, a device that
does not match it gets NO version of the model. For a model with an active (running or
paused) rollout, a device matching the rollout's own targeting whose bucket is below
``percent * 100`` gets the candidate; every other device keeps the control version (the
current production version). Paused rollouts keep serving their current percent; a rolled
back rollout serves nobody the candidate.

Atomicity: every move is ONE transaction that locks the model row first, reads the
rollout under that lock, checks the state there, and writes everything the move
implies — the promotion of ``complete``, the new state, the audit row — before it
commits (``RolloutStore.locked``). A manual promotion takes the same model lock and is
refused while a rollout is active, so ``rolled_back`` always leaves the previous
production version in production and ``completed`` always leaves the candidate there.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from pocketml.db import utcnow
from pocketml.delivery._experiment_store import ExperimentStore
from pocketml.delivery._plan import ACTIVE_STATES, CheckinPlan, ModelPlan, build_plan
from pocketml.delivery._rollout_store import AuditEntry, Rollout, RolloutStore
from pocketml.delivery.guardrails import parse_guardrails
from pocketml.delivery.targeting import Targeting, parse_targeting
from pocketml.errors import Conflict, InvalidInput
from pocketml.registry import Registry, VersionInfo
from pocketml.registry.transactions import promote_in
from pocketml.telemetry import TelemetryStore

__all__ = [
    "ACTIVE_STATES",
    "CHANNELS",
    "TRANSITIONS",
    "AuditEntry",
    "CheckinPlan",
    "ModelPlan",
    "Rollout",
    "RolloutService",
    "validate_schedule",
]

logger = logging.getLogger(__name__)

CHANNELS = ("production",)
# action -> (states it may start from, state it leads to; None: stays)
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "advance": (frozenset({"running"}), None),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "rollback": (frozenset({"running", "paused"}), "rolled_back"),
    "complete": (frozenset({"running", "paused"}), "completed"),
}


def validate_schedule(schedule: Sequence[float]) -> tuple[float, ...]:
    """Check a schedule of percents: each in (0, 100], increasing, ending at 100.

    Raises:
        InvalidInput: what is wrong and an example of a valid schedule.
    """
    values = tuple(float(p) for p in schedule)
    hint = "Use e.g. [1, 5, 25, 100]."
    if not values or len(values) > 20:
        raise InvalidInput(f"schedule must have 1 to 20 steps; got {list(values)}. {hint}")
    for p in values:
        if not 0 < p <= 100:
            raise InvalidInput(f"each percent must be in (0, 100]; got {p:g}. {hint}")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise InvalidInput(f"schedule must increase step by step; got {list(values)}. {hint}")
    if values[-1] != 100:
        raise InvalidInput(f"schedule must reach 100; it ends at {values[-1]:g}. {hint}")
    return values


class RolloutService:
    """Creates rollouts and moves them through the state machine; audits every move.

    Args:
        registry: the open registry (versions, promotion, the database engine).
        on_change: called with the app id after any change devices must see.
        telemetry: where guardrails and experiments read events; a new
            ``TelemetryStore`` on the registry's engine by default (pass the server's
            to share its cache of decoded chunks).
    """

    def __init__(
        self,
        registry: Registry,
        on_change: Callable[[str], None] | None = None,
        *,
        telemetry: TelemetryStore | None = None,
    ) -> None:
        self.registry = registry
        self.on_change = on_change
        self.store = RolloutStore(registry.store.engine)
        self.telemetry = telemetry or TelemetryStore(registry.store.engine)

    # -- targeting -----------------------------------------------------------------------

    def set_targeting(
        self, app_id: str, model: str, rules: list[dict[str, Any]], *, channel: str = "production"
    ) -> Targeting:
        """Replace a model channel's targeting rules (``[]``: every device).

        Raises:
            NotFound: no such model. InvalidInput: malformed rules or unknown channel.
        """
        _check_channel(channel)
        targeting = parse_targeting(rules)
        info = self.registry.get_model(app_id, model)
        self.store.set_targeting(app_id, info.id, channel, targeting.to_list())
        self.notify_changed(app_id)
        return targeting

    def get_targeting(self, app_id: str, model: str, *, channel: str = "production") -> Targeting:
        """A model channel's targeting (``Targeting()`` when none is stored)."""
        info = self.registry.get_model(app_id, model)
        rules = self.store.targeting_of_app(app_id, channel).get(info.id)
        return parse_targeting(rules) if rules else Targeting()

    # -- rollouts ------------------------------------------------------------------------

    def create(
        self,
        app_id: str,
        model: str,
        candidate_version: int,
        *,
        schedule: Sequence[float] = (1, 5, 25, 100),
        channel: str = "production",
        min_dwell_s: float = 3600.0,
        min_samples: int = 200,
        on_breach: str = "rollback",
        guardrails: dict[str, Any] | None = None,
        targeting: list[dict[str, Any]] | None = None,
        actor: str = "admin",
        now: datetime | None = None,
    ) -> Rollout:
        """Start a rollout of ``candidate_version`` at the schedule's first percent.

        Raises:
            NotFound: no such model or version.
            InvalidInput: bad schedule, dwell, sample size, breach action, guardrails or
                targeting; the candidate is already in production; or it has no device
                variant for a targeted device class (named in the message).
            Conflict: the model already has an active rollout on this channel.
        """
        _check_channel(channel)
        steps = validate_schedule(schedule)
        if min_dwell_s < 0 or min_samples < 1:
            raise InvalidInput(
                f"min_dwell_s must be >= 0 and min_samples >= 1; got {min_dwell_s} and "
                f"{min_samples}."
            )
        if on_breach not in ("pause", "rollback"):
            raise InvalidInput(f"on_breach must be 'pause' or 'rollback'; got {on_breach!r}.")
        spec = parse_guardrails(guardrails, min_samples)
        rollout_targeting = parse_targeting(targeting)
        candidate = self.registry.get_version(app_id, model, candidate_version)
        channel_targeting = self.get_targeting(app_id, model, channel=channel)
        _check_variants(candidate, rollout_targeting, channel_targeting)
        moment = now or utcnow()
        values: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "app_id": app_id,
            "model": model,
            "channel": channel,
            "candidate_version": candidate_version,
            "state": "running",
            "schedule": list(steps),
            "step": 0,
            "percent": steps[0],
            "min_dwell_s": float(min_dwell_s),
            "min_samples": int(min_samples),
            "on_breach": on_breach,
            "guardrails": spec.to_dict(),
            "targeting": rollout_targeting.to_list(),
            "salt": secrets.token_hex(16),
            "step_started_at": moment,
            "last_evaluation": {},
            "created_by": actor,
            "created_at": moment,
            "updated_at": moment,
        }
        audit = _audit(
            str(values["id"]), app_id, "create", None, "running", actor, "created", moment
        )
        audit["details"] = {"candidate_version": candidate_version, "percent": steps[0]}
        experiments = ExperimentStore(self.store.engine)
        # The production version (the control) is read under the model lock, so a manual
        # promotion cannot slip in between it and the insert.
        with self.store.model_transaction(app_id, "create the rollout", name=model) as (conn, info):
            if info.production_version == candidate_version:
                raise InvalidInput(
                    f"version {candidate_version} of {model!r} is already in production; "
                    "push a new version and roll that out."
                )
            if experiments.running_in(conn, info.id, channel):
                raise Conflict(
                    f"model {model!r} has a running experiment on channel {channel!r}; stop "
                    "it before starting a rollout (pocketml experiment stop)."
                )
            values.update(model_id=info.id, control_version=info.production_version)
            self.store.insert_in(conn, values, audit)
        rollout = self.store.get(app_id, str(values["id"]))
        self.notify_changed(app_id)
        logger.info("started rollout %s of %s v%d", rollout.id, model, candidate_version)
        return rollout

    def get(self, app_id: str, rollout_id: str) -> Rollout:
        """One rollout. Raises NotFound."""
        return self.store.get(app_id, rollout_id)

    def list_rollouts(self, app_id: str, *, active_only: bool = False) -> list[Rollout]:
        """The app's rollouts, newest first."""
        return self.store.list_rollouts(app_id, states=ACTIVE_STATES if active_only else None)

    def audit(
        self, app_id: str, *, subject: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """The newest audit entries of the app (of one rollout when ``subject`` is given)."""
        return self.store.audit(app_id, subject=subject, limit=max(1, min(limit, 1000)))

    def transition(
        self,
        app_id: str,
        rollout_id: str,
        action: str,
        *,
        actor: str = "admin",
        reason: str = "",
        details: dict[str, Any] | None = None,
        now: datetime | None = None,
        expected: Rollout | None = None,
    ) -> Rollout:
        """Apply ``action`` (advance, pause, resume, rollback, complete) to a rollout.

        Args:
            app_id: the caller's app.
            rollout_id: the rollout.
            action: one of ``TRANSITIONS``.
            actor: who or what acts ("admin", "evaluator").
            reason: why, for the audit log.
            details: numbers behind the decision (guardrail results), for the audit log.
            now: the clock (tests inject it).
            expected: the rollout as the caller read it; the move is refused when it
                changed since (so two evaluators never both advance one step).

        Returns:
            The rollout after the move.

        Raises:
            NotFound: no such rollout. InvalidInput: unknown action.
            Conflict: the move is illegal from the rollout's state (named), it is already
                at its last step (advance), or another writer moved it first.
        """
        if action not in TRANSITIONS:
            raise InvalidInput(f"action must be one of {', '.join(TRANSITIONS)}; got {action!r}.")
        moment = now or utcnow()
        with self.store.locked(app_id, rollout_id) as (conn, model, current):
            if expected is not None and (current.state, current.step) != (
                expected.state,
                expected.step,
            ):
                raise _changed(rollout_id, action)
            values = _next_values(action, current, moment)
            if details is not None and "guardrails" in details:
                values["last_evaluation"] = details
            if action == "complete":
                promote_in(conn, model, current.candidate_version)
            audit = _audit(
                current.id, app_id, action, current.state, values["state"], actor, reason, moment
            )
            audit["details"] = {
                **(details or {}),
                "percent": values.get("percent", current.percent),
            }
            if not self.store.apply(conn, current, values, audit):
                raise _changed(rollout_id, action)
        self.notify_changed(app_id)
        return self.store.get(app_id, rollout_id)

    def record_evaluation(self, rollout: Rollout, evaluation: dict[str, Any]) -> None:
        """Store the latest guardrail numbers without a transition (no audit row)."""
        self.store.transition(rollout, {"last_evaluation": evaluation}, None)

    # -- check-in ------------------------------------------------------------------------

    def plan(self, app_id: str, channel: str = "production") -> CheckinPlan:
        """What check-in needs for the app: targeting, active rollouts and experiments."""
        return build_plan(self.registry, self.store, app_id, channel)

    def notify_changed(self, app_id: str) -> None:
        """Tell check-in (``on_change``) that what devices should get has changed."""
        if self.on_change is not None:
            self.on_change(app_id)


def _next_values(action: str, current: Rollout, moment: datetime) -> dict[str, Any]:
    """The columns ``action`` changes on ``current``. Raises Conflict for an illegal move."""
    allowed, target = TRANSITIONS[action]
    if current.state not in allowed:
        raise Conflict(
            f"cannot {action} rollout {current.id}: it is {current.state}; {action} "
            f"needs state {' or '.join(sorted(allowed))}."
        )
    values: dict[str, Any] = {"state": target or current.state}
    if action == "advance":
        if current.step + 1 >= len(current.schedule):
            raise Conflict(
                f"cannot advance rollout {current.id}: it is at its last step "
                f"({current.percent:g}%); complete it instead."
            )
        values.update(step=current.step + 1, percent=current.schedule[current.step + 1])
    if action in ("advance", "resume"):
        values["step_started_at"] = moment
    if action == "rollback":
        values["percent"] = 0.0
    if action == "complete":
        values["percent"] = 100.0
    return values


def _changed(rollout_id: str, action: str) -> Conflict:
    return Conflict(
        f"rollout {rollout_id} changed while it was being moved ({action}); "
        "read it again and retry."
    )


def _check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InvalidInput(f"channel must be one of {', '.join(CHANNELS)}; got {channel!r}.")


def _check_variants(candidate: VersionInfo, *targetings: Targeting) -> None:
    device_variants = [v for v in candidate.variants if v.role == "device"]
    if not device_variants:
        raise InvalidInput(
            f"version {candidate.version} of {candidate.model!r} has no device variant; "
            "push one (role 'device') before rolling it out."
        )
    classes: set[str] = set()
    for targeting in targetings:
        classes |= targeting.device_classes()
    covered = {p.lower() for v in device_variants for p in v.profiles}
    missing = sorted(classes - covered)
    if missing:
        raise InvalidInput(
            f"version {candidate.version} of {candidate.model!r} has no device variant for "
            f"targeted device class {', '.join(missing)}; build one for that class or drop "
            "the class from the targeting."
        )


def _audit(
    subject: str,
    app_id: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    actor: str,
    reason: str,
    at: datetime,
) -> dict[str, Any]:
    return {
        "app_id": app_id,
        "subject": subject,
        "action": action,
        "from_state": from_state,
        "to_state": to_state,
        "actor": actor,
        "reason": reason or action,
        "details": {},
        "at": at,
    }
