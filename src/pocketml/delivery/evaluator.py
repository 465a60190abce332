"""The rollout evaluator: guardrails on telemetry, then advance, pause or roll back.

``evaluate_rollouts(service, now=...)`` is one synchronous pass over every running
rollout (tests and the demo inject the clock). For each one it reads the candidate's and
the control's telemetry since the current step started and runs the guardrails:

- a breach -> ``on_breach`` (pause or rollback), recording the metric, both values, the
  sample sizes, the test and its p-value in the audit log;
- no breach, the dwell time elapsed and at least ``min_samples`` candidate inferences ->
  advance to the next step (complete, which promotes the candidate, after the last one);
- otherwise the numbers are stored on the rollout and nothing moves.

``RolloutEvaluator`` runs passes inside the server (``pocketml.db.run_periodically``). Only
the holder of the database lease ``rollout-evaluator`` evaluates, so several replicas never
act twice; and every move is a conditional update, so even two holders could not both
advance one step.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import pyarrow.compute as pc

from pocketml.db import process_owner, run_periodically, utcnow
from pocketml.delivery._rollout_store import Rollout
from pocketml.delivery.guardrails import ArmSample, evaluate_guardrails, parse_guardrails
from pocketml.delivery.rollouts import RolloutService
from pocketml.errors import Conflict, PocketMLError
from pocketml.telemetry import TelemetryStore

__all__ = [
    "EvaluationOutcome",
    "RolloutEvaluator",
    "arm_samples",
    "arm_samples_by_version",
    "evaluate_rollouts",
]

logger = logging.getLogger(__name__)

LEASE_NAME = "rollout-evaluator"


@dataclass(frozen=True)
class EvaluationOutcome:
    """What one pass did to one rollout: ``advance``, ``complete``, ``pause``,
    ``rollback``, ``wait`` or ``skipped`` (another writer moved it first)."""

    rollout_id: str
    action: str
    reason: str


def arm_samples(
    telemetry: TelemetryStore, rollout: Rollout, since: float, until: float
) -> tuple[ArmSample, ArmSample]:
    """The candidate's and the control's telemetry of ``rollout`` in [since, until).

    Raises:
        Unavailable: the database cannot be reached.
    """
    versions = [rollout.candidate_version]
    if rollout.control_version is not None:
        versions.append(rollout.control_version)
    samples = arm_samples_by_version(
        telemetry, rollout.app_id, rollout.model, versions, since, until
    )
    control = samples.get(rollout.control_version or -1, ArmSample())
    return samples[rollout.candidate_version], control


def arm_samples_by_version(
    telemetry: TelemetryStore,
    app_id: str,
    model: str,
    versions: list[int],
    since: float,
    until: float,
) -> dict[int, ArmSample]:
    """Telemetry per version of ``model`` in [since, until) (every listed version present).

    Reads ``TelemetryStore.events``, the same path as the model metrics.

    Raises:
        Unavailable: the database cannot be reached.
    """
    events = telemetry.events(app_id, model, since, until, versions)
    return {
        v: ArmSample.from_events(events.filter(pc.fill_null(pc.equal(events.version, v), False)))
        for v in versions
    }


def _evaluate_one(service: RolloutService, rollout: Rollout, now: datetime) -> EvaluationOutcome:
    since = rollout.step_started_at.timestamp()
    candidate, control = arm_samples(service.telemetry, rollout, since, now.timestamp())
    spec = parse_guardrails(rollout.guardrails, rollout.min_samples)
    results = evaluate_guardrails(candidate, control, spec)
    evaluation = {
        "at": now.isoformat(),
        "window": [since, now.timestamp()],
        "guardrails": [r.to_dict() for r in results],
    }
    breaches = [r for r in results if r.status == "breach"]
    dwell = (now - rollout.step_started_at).total_seconds()
    if breaches:
        first = breaches[0]
        action = rollout.on_breach
        reason = (
            f"guardrail {first.metric} breached: candidate {first.candidate:.4g} vs control "
            f"{first.control:.4g} (n={first.n_candidate}/{first.n_control}, {first.test} "
            f"p={first.p_value:.2g}, threshold {first.threshold:g})"
        )
    elif dwell >= rollout.min_dwell_s and candidate.inferences >= rollout.min_samples:
        is_last = rollout.step + 1 >= len(rollout.schedule)
        action = "complete" if is_last else "advance"
        reason = (
            f"step {rollout.step + 1} healthy after {dwell:.0f}s and "
            f"{candidate.inferences} candidate inferences"
        )
    else:
        service.record_evaluation(rollout, evaluation)
        return EvaluationOutcome(
            rollout.id,
            "wait",
            f"dwell {dwell:.0f}/{rollout.min_dwell_s:.0f}s, "
            f"samples {candidate.inferences}/{rollout.min_samples}",
        )
    try:
        service.transition(
            rollout.app_id,
            rollout.id,
            action,
            actor="evaluator",
            reason=reason,
            details=evaluation,
            now=now,
            expected=rollout,
        )
    except Conflict as exc:
        return EvaluationOutcome(rollout.id, "skipped", str(exc))
    logger.info("rollout %s: %s (%s)", rollout.id, action, reason)
    return EvaluationOutcome(rollout.id, action, reason)


def evaluate_rollouts(
    service: RolloutService,
    *,
    now: datetime | None = None,
    running: list[Rollout] | None = None,
) -> list[EvaluationOutcome]:
    """One evaluation pass over every running rollout of every app.

    Args:
        service: the rollout service (its registry's database holds the telemetry).
        now: the clock (timezone-aware); ``utcnow()`` by default.
        running: the running rollouts when the caller has just read them (else read here).

    Returns:
        One outcome per running rollout. A failure on one rollout is logged and reported
        as ``error`` without stopping the pass.
    """
    moment = now or utcnow()
    outcomes = []
    if running is None:
        running = service.store.list_rollouts(None, states=("running",))
    for rollout in running:
        try:
            outcomes.append(_evaluate_one(service, rollout, moment))
        except PocketMLError as exc:
            logger.warning("rollout %s: evaluation failed: %s", rollout.id, exc)
            outcomes.append(EvaluationOutcome(rollout.id, "error", str(exc)))
    return outcomes


class RolloutEvaluator:
    """Runs ``evaluate_rollouts`` while holding the database lease.

    Args:
        service: the rollout service.
        interval_s: seconds between passes.
        owner: this replica's lease owner id (host, pid and a random suffix by default).
    """

    def __init__(
        self, service: RolloutService, *, interval_s: float = 30.0, owner: str | None = None
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.owner = owner or process_owner()

    def run_once(self, now: datetime | None = None) -> list[EvaluationOutcome] | None:
        """One pass if this replica holds (or takes) the lease; None when another holds it.

        With no running rollout the pass ends after one read: no lease write, so an idle
        server does not write to its database every ``interval_s``.
        """
        moment = now or utcnow()
        running = self.service.store.list_rollouts(None, states=("running",))
        if not running:
            return []
        ttl = max(3 * self.interval_s, 10.0)
        if not self.service.store.acquire_lease(LEASE_NAME, self.owner, moment.timestamp(), ttl):
            return None
        return evaluate_rollouts(self.service, now=moment, running=running)

    async def run_forever(self, stop: asyncio.Event, *, max_passes: int | None = None) -> None:
        """Pass every ``interval_s`` seconds (in a worker thread) until ``stop`` is set.

        Args:
            stop: set it to end the loop; the lease is released on the way out.
            max_passes: end after this many passes (tests); None = until ``stop``.
        """
        await run_periodically(
            self.run_once,
            stop,
            interval_s=self.interval_s,
            name="rollout evaluator",
            on_stop=lambda: self.service.store.release_lease(LEASE_NAME, self.owner),
            max_passes=max_passes,
            logger=logger,
        )
