"""``LoopService``: retraining jobs for the server, by hand and by trigger.

``run`` creates a job or returns the model's active one; ``tick(now)`` is one background
pass (``run_periodically`` in the server):

1. recover: a ``running`` job whose lease expired (its server died mid-step), or that is
   leased to this replica's own owner id without this process running it (the replica
   restarted), is ended ``failed`` with "server restarted during step X", and a candidate
   it pushed but never rolled out is archived. Jobs are not resumed: the trigger that
   started one still holds (the alert still fires, the labels are still new), so the next
   pass starts a fresh job from a clean work directory — cheaper to reason about than
   resuming half a build;
2. triggers: for each model with a loop policy (enabled), a firing alert on one of its
   metrics that started after the model's last job (with ``min_labels_for_alert`` labels),
   the schedule, or ``min_new_labels`` labels since the last job queue a job;
3. at most one queued job is claimed (a conditional update: one replica wins) and run to
   its end under its lease, renewed at every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.db import process_owner, utcnow
from pocketml.errors import InvalidInput, PocketMLError
from pocketml.loop._jobs import Job, JobStore
from pocketml.loop._policy import TRIGGER_KINDS, LoopPolicy, parse_policy
from pocketml.loop._recipe import RecipeRunner, SampleSource, run_recipe
from pocketml.loop._run import JobRunner, Pusher, RolloutStarter

if TYPE_CHECKING:
    from pocketml.monitor.alerts import AlertService
    from pocketml.registry import Registry

__all__ = ["LoopService", "TickOutcome"]

logger = logging.getLogger(__name__)


class TickOutcome(dict[str, Any]):
    """What one pass did: ``recovered``, ``queued`` and ``ran`` job ids."""


class LoopService:
    """Retraining jobs of every model of the server.

    Args:
        engine: the database (the registry's).
        registry: the open registry.
        delivery: has ``.rollouts`` (``DeliveryService``), where blessed candidates go.
        alerts: the alert service (trigger reads), or None (no alert trigger).
        samples: the sample store (``SampleSource``: its two reads).
        recipe_runner: runs a recipe (``run_recipe`` by default).
        pusher: pushes a BUILD_DIR, returns the version number.
        clock: the current time (timezone-aware).
        work_dir: where jobs build (one folder per job, removed at its end).
        owner: this replica's lease owner id.
        lease_ttl_s: how long a job's lease lasts between two renewals.
    """

    def __init__(
        self,
        engine: Any,
        registry: Registry,
        delivery: Any,
        alerts: AlertService | None,
        samples: SampleSource,
        recipe_runner: RecipeRunner | None,
        pusher: Pusher,
        clock: Callable[[], datetime] = utcnow,
        *,
        work_dir: Path,
        owner: str | None = None,
        lease_ttl_s: float = 900.0,
    ) -> None:
        self.store = JobStore(engine)
        self.registry = registry
        self.delivery = delivery
        self.alerts = alerts
        self.samples = samples
        self.clock = clock
        self.owner = owner or process_owner()
        self._running: set[str] = set()  # jobs this process is running now
        self.runner = JobRunner(
            self.store,
            registry,
            self._rollouts,
            lambda: samples,
            recipe_runner or run_recipe,
            pusher,
            clock,
            work_dir,
            self.owner,
            lease_ttl_s,
            inherit_policy=getattr(delivery, "copy_policy", None),
        )

    def _rollouts(self) -> RolloutStarter:
        rollouts: RolloutStarter = self.delivery.rollouts
        return rollouts

    def request_stop(self) -> None:
        """Ask a running job to end at its next progress line (the server is stopping):
        it ends ``failed`` with "the server shut down" rather than holding shutdown for
        the rest of its build."""
        self.runner.stopping.set()

    # -- policies --------------------------------------------------------------------------

    def get_policy(self, app_id: str, model: str) -> LoopPolicy:
        """The model's loop policy (defaults when none was set). Raises NotFound."""
        info = self.registry.get_model(app_id, model)
        return self.store.get_policy(info.id)

    def set_policy(self, app_id: str, model: str, raw: Any, *, actor: str) -> LoopPolicy:
        """Validate and store the model's policy (missing keys: defaults).

        Raises:
            NotFound: no such model. ValidationFailed: an unknown key or a bad value.
        """
        policy = parse_policy(raw)
        info = self.registry.get_model(app_id, model)
        self.store.set_policy(app_id, info.id, info.name, policy, actor=actor, now=self.clock())
        logger.info("loop policy of %s set by %s", model, actor)
        return policy

    # -- jobs ------------------------------------------------------------------------------

    def run(
        self,
        app_id: str,
        model: str,
        *,
        trigger: str = "manual",
        actor: str,
        details: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job for ``model``, or return its active one.

        Returns:
            (the job, True when this call created it).

        Raises:
            NotFound: no such model. InvalidInput: an unknown trigger.
        """
        if trigger not in TRIGGER_KINDS:
            raise InvalidInput(
                f"trigger must be one of {', '.join(TRIGGER_KINDS)}; got {trigger!r}"
            )
        info = self.registry.get_model(app_id, model)
        return self.store.create(
            app_id, info.name, trigger=trigger, details=details or {}, actor=actor, now=self.clock()
        )

    def list_jobs(self, app_id: str, model: str | None = None, *, limit: int = 50) -> list[Job]:
        """The app's jobs (of one model), newest first. Raises NotFound for a bad model."""
        if model is not None:
            self.registry.get_model(app_id, model)
        return self.store.list_jobs(app_id, model, limit=limit)

    def get_job(self, app_id: str, job_id: str) -> Job:
        """One job. Raises NotFound."""
        return self.store.get(app_id, job_id)

    # -- the background pass ---------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> TickOutcome:
        """One pass: recover dead jobs, check triggers, run at most one queued job."""
        moment = now or self.clock()
        outcome = TickOutcome(recovered=self.recover(moment), queued=[], ran=None)
        outcome["queued"] = self.check_triggers(moment)
        for job in self.store.queued():
            if not self.store.claim(job.id, self.owner, moment, self.runner.lease_ttl_s):
                continue  # another replica took it
            claimed = self.store.get(job.app_id, job.id)
            policy = self._policy_or_default(job)
            self._running.add(job.id)
            try:
                outcome["ran"] = self.runner.run(claimed, policy).id
            finally:
                self._running.discard(job.id)
            break
        return outcome

    def _policy_or_default(self, job: Job) -> LoopPolicy:
        try:
            return self.get_policy(job.app_id, job.model)
        except PocketMLError:
            return LoopPolicy()

    def recover(self, now: datetime) -> list[str]:
        """End as failed every running job whose server died: its lease expired, or it is
        leased to this replica's owner id but this process is not running it (the replica
        restarted; it need not wait out its own lease)."""
        ended = []
        for job in self.store.stale(now.timestamp(), self.owner):
            if job.id in self._running:
                continue
            holder = self.owner if job.lease_owner == self.owner else None
            step = job.step or "start"
            message = f"server restarted during step {step}; the job was not resumed"
            log = [*job.log, f"{now.isoformat()} {message}"]
            try:  # ended first: a holder that renewed in between keeps its job and candidate
                self.store.finish(job, holder, "failed", now, error=message, log=log)
            except PocketMLError:  # another replica recovered it first, or it is alive
                continue
            if job.candidate_version is not None and job.rollout_id is None:
                try:
                    self.registry.set_stage(
                        job.app_id, job.model, job.candidate_version, "archived"
                    )
                    logger.warning(
                        "loop job %s: candidate v%d archived", job.id, job.candidate_version
                    )
                except PocketMLError as error:
                    logger.warning("loop job %s: could not archive: %s", job.id, error)
            logger.warning("loop job %s of %s: %s", job.id, job.model, message)
            ended.append(job.id)
        return ended

    def check_triggers(self, now: datetime) -> list[str]:
        """Queue a job for each model whose policy's trigger holds. Returns new job ids."""
        created = []
        for app_id, model, policy in self.store.policies():
            if not policy.enabled:
                continue
            try:
                found = self._trigger_of(app_id, model, policy, now)
                if found is None:
                    continue
                job, is_new = self.store.create(
                    app_id, model, trigger=found[0], details=found[1], actor="loop", now=now
                )
            except PocketMLError as error:
                logger.warning("loop triggers of %s: %s", model, error)
                continue
            if is_new:
                created.append(job.id)
        return created

    def _delivering(self, app_id: str, model: str) -> bool:
        """Whether a rollout or an experiment of ``model`` is running: a new candidate
        could not start its canary, so no job is started until it ends (the previous
        job's canary is judged first)."""
        rollouts = getattr(self.delivery, "rollouts", None)
        if rollouts is not None and any(
            r.model == model for r in rollouts.list_rollouts(app_id, active_only=True)
        ):
            return True
        experiments = getattr(self.delivery, "experiments", None)
        return experiments is not None and any(
            e.model == model for e in experiments.list_experiments(app_id, running_only=True)
        )

    def _trigger_of(
        self, app_id: str, model: str, policy: LoopPolicy, now: datetime
    ) -> tuple[str, dict[str, Any]] | None:
        if self.store.active(app_id, model) is not None or self._delivering(app_id, model):
            return None
        last = self.store.last(app_id, model)
        if (
            last is not None
            and last.state == "failed"
            and last.finished_at is not None
            and now - last.finished_at < timedelta(seconds=policy.retry_failed_after_s)
        ):
            return None  # a failed job is retried, but not at every pass
        # Evidence is consumed by a job that reached a verdict; a failed one (a crash, a
        # restart, a broken build) leaves its alert episode and its labels to the retry.
        done = self.store.last_finished(app_id, model)
        since = done.created_at if done is not None else None
        triggers = policy.triggers
        if self.alerts is not None and triggers.alert_metrics:
            firing = [
                alert
                for alert in self.alerts.list_alerts(app_id, states=["firing"], model=model)
                if alert.metric in triggers.alert_metrics
                and (since is None or (alert.starts_at is not None and alert.starts_at > since))
            ]
            if firing:
                # new evidence only: the samples a previous job already trained on do not
                # start another job (else every alert after a promotion would retrain on them)
                labels = self.samples.count_labelled(
                    app_id, model, since=None if since is None else since.timestamp()
                )
                if labels >= policy.min_labels_for_alert:
                    alert = firing[0]
                    return "alert", {
                        "alert_id": alert.id,
                        "metric": alert.metric,
                        "value": alert.value,
                        "labels": labels,
                    }
        if triggers.schedule_s > 0:
            due = since is None or now - since >= timedelta(seconds=triggers.schedule_s)
            if due:
                return "schedule", {"every_s": triggers.schedule_s}
        if triggers.min_new_labels > 0:
            new = self.samples.count_labelled(
                app_id, model, since=None if since is None else since.timestamp()
            )
            if new >= triggers.min_new_labels:
                return "labels", {"new_labels": new}
        return None
