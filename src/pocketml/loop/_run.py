"""One retraining job, step by step: collect -> build -> push -> gate -> rollout.

Each step is recorded (start, seconds, a log line) and renews the job's lease. A failure
in any step ends the job ``failed`` with the reason and leaves the registry as it was: the
build writes only into the job's work directory, the push is atomic in the registry, and
a candidate that was pushed but never reached a rollout (the gate rejected it, or the gate
or rollout step failed) is archived, so no device ever gets it.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pocketml.errors import Conflict, InvalidInput, PocketMLError, Unavailable
from pocketml.loop._gate import Scorer, evaluate_gate, hold_out, onnx_scorer
from pocketml.loop._jobs import Job, JobStore, LeaseLost
from pocketml.loop._policy import LoopPolicy
from pocketml.loop._recipe import RecipeResult, RecipeRunner, SampleSource, recipe_of
from pocketml.loop._trust import filter_samples
from pocketml.loop._types import LabelledSamples
from pocketml.registry import Registry, VariantInfo, VersionInfo
from pocketml.schema import ModelSchema

__all__ = ["JobRunner", "Pusher", "RolloutStarter"]

logger = logging.getLogger(__name__)


class Pusher(Protocol):
    """Pushes a BUILD_DIR as a new candidate version; returns its number."""

    def __call__(
        self, app_id: str, model: str, build_dir: Path, meta: Mapping[str, Any]
    ) -> int: ...


class RolloutStarter(Protocol):
    """What starts a staged rollout (``DeliveryService.rollouts.create``)."""

    def create(self, app_id: str, model: str, candidate_version: int, **options: Any) -> Any: ...


@dataclass
class _Progress:
    job: Job
    log: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    candidate: int | None = None
    rollout_id: str | None = None


class JobRunner:
    """Runs claimed jobs (see ``LoopService`` for how jobs are created and claimed)."""

    def __init__(
        self,
        store: JobStore,
        registry: Registry,
        rollouts: Callable[[], RolloutStarter],
        samples: Callable[[], SampleSource],
        recipe_runner: RecipeRunner,
        pusher: Pusher,
        clock: Callable[[], datetime],
        work_dir: Path,
        owner: str,
        lease_ttl_s: float,
        inherit_policy: Callable[[str, str, int, int], None] | None = None,
    ) -> None:
        self.store = store
        # (app_id, model, champion, candidate): the candidate gets the champion's version
        # policy (hybrid, download, monitor, capture) before any device can see it
        self.inherit_policy = inherit_policy
        self.registry = registry
        self.rollouts = rollouts
        self.samples = samples
        self.recipe_runner = recipe_runner
        self.pusher = pusher
        self.clock = clock
        self.work_dir = work_dir
        self.owner = owner
        self.lease_ttl_s = lease_ttl_s
        self.stopping = threading.Event()  # set by the server's shutdown

    # -- bookkeeping -----------------------------------------------------------------------

    def _note(self, progress: _Progress, text: str, **values: Any) -> None:
        """Add a log line and renew the lease.

        Raises:
            LeaseLost: the job was recovered elsewhere.
            Unavailable: the server is shutting down (the job ends failed, so shutdown
                never waits for a whole build).
        """
        if self.stopping.is_set() and "steps" not in values:
            raise Unavailable("the server shut down; the job was not resumed")
        now = self.clock()
        progress.log.append(f"{now.isoformat()} {text}")
        progress.job = self.store.update(
            progress.job,
            self.owner,
            lease_until=now.timestamp() + self.lease_ttl_s,
            log=progress.log,
            **values,
        )

    def _step(self, progress: _Progress, name: str, work: Callable[[], Any]) -> Any:
        started = self.clock()
        tick = time.perf_counter()
        self._note(progress, f"{name}: started", step=name)
        result = work()
        seconds = round(time.perf_counter() - tick, 3)
        progress.steps.append({"step": name, "started_at": started.isoformat(), "seconds": seconds})
        self._note(progress, f"{name}: done in {seconds:.2f} s", steps=progress.steps)
        return result

    # -- the job ---------------------------------------------------------------------------

    def run(self, job: Job, policy: LoopPolicy) -> Job:
        """Run a job this runner has claimed, to its end state.

        Returns:
            The finished job (or, when its lease was lost to a recovery, as stored).
        """
        progress = _Progress(job, list(job.log))
        try:
            return self._run(progress, policy)
        except LeaseLost as lost:  # recovered elsewhere: that replica recorded why
            logger.warning("loop job %s: %s", job.id, lost)
            # The recovering replica may not have known the candidate (pushed just before
            # the lease ran out): keep it out of every rollout from here.
            self._archive(progress)
            return self.store.get(job.app_id, job.id)
        except Exception as error:  # any step: record why, leave the registry as it was
            return self._fail(progress, error)

    def _run(self, progress: _Progress, policy: LoopPolicy) -> Job:
        job = progress.job
        champion, schema, train, fresh = self._step(
            progress, "collect", lambda: self._collect(progress, policy)
        )
        recipe = recipe_of(champion.params)
        build: RecipeResult = self._step(
            progress, "build", lambda: self._build(progress, recipe, train, policy)
        )
        meta = {
            "parent_version": champion.version,
            "run_record": {
                "loop": {
                    "job_id": job.id,
                    "trigger": job.trigger,
                    "samples": len(train),
                    "samples_fingerprint": train.fingerprint(),
                    "sample_weight": policy.sample_weight,
                }
            },
        }

        def push() -> int:
            # remembered at once, in memory and in the job row (a replica that recovers the
            # job archives it): a failure after this point archives the candidate
            progress.candidate = int(self.pusher(job.app_id, job.model, build.build_dir, meta))
            progress.job = self.store.update(
                progress.job, self.owner, candidate_version=progress.candidate
            )
            return progress.candidate

        version = self._step(progress, "push", push)
        self._note(progress, f"pushed candidate v{version}", candidate_version=version)
        if self.inherit_policy is not None:
            self.inherit_policy(job.app_id, job.model, champion.version, version)
        candidate = self.registry.get_version(job.app_id, job.model, version)
        result = self._step(
            progress,
            "gate",
            lambda: evaluate_gate(
                self._scorer(job.app_id, candidate, schema),
                self._scorer(job.app_id, champion, schema),
                build.golden,
                fresh,
                trigger=job.trigger,
                policy=policy.gate,
            ),
        )
        self._note(progress, f"gate: {result.reason}", gate=result.to_dict())
        if not result.blessed:
            self._archive(progress)
            return self._end(progress, "rejected")
        rollout = self._step(
            progress,
            "rollout",
            lambda: self.rollouts().create(
                job.app_id,
                job.model,
                version,
                schedule=list(policy.rollout.schedule),
                min_dwell_s=policy.rollout.min_dwell_s,
                min_samples=policy.rollout.min_samples,
                on_breach=policy.rollout.on_breach,
                guardrails=policy.rollout.guardrails or None,
                actor=f"loop-job:{job.id}",
                now=self.clock(),
            ),
        )
        progress.rollout_id = str(rollout.id)
        self._note(progress, f"rollout {rollout.id} started at {rollout.percent:g}%")
        return self._end(progress, "succeeded", rollout_id=progress.rollout_id)

    def _collect(
        self, progress: _Progress, policy: LoopPolicy
    ) -> tuple[VersionInfo, ModelSchema, LabelledSamples, LabelledSamples]:
        job = progress.job
        info = self.registry.get_model(job.app_id, job.model)
        if info.production_version is None:
            raise InvalidInput(
                f"model {job.model!r} has no production version to retrain; promote one first."
            )
        champion = self.registry.get_version(job.app_id, job.model, info.production_version)
        recipe_of(champion.params)  # no recipe: fail before reading any sample
        schema = ModelSchema.from_dict(info.schema)
        samples = self.samples().labelled(job.app_id, job.model)
        # in sample-id order, not arrival order: the same samples train the same candidate
        # however the devices' uploads interleaved
        samples = samples.select(np.argsort(samples.sample_id.astype(str), kind="stable"))
        teacher = None
        if len(samples):
            teacher = self._scorer(job.app_id, champion, schema, role="cloud")(samples.features)
        report = filter_samples(samples, teacher, policy.trust)
        train, fresh = hold_out(report.kept, policy.holdout_share)
        summary = {
            **report.summary(),
            "training": len(train),
            "fresh": len(fresh),
            "fingerprint": train.fingerprint(),
            "excluded": [d.to_dict() for d in report.devices if d.excluded][:50],
        }
        self._note(
            progress,
            f"collect: {len(samples)} samples from {len(report.devices)} devices, "
            f"{len(report.kept)} trusted ({len(report.excluded_devices)} devices excluded); "
            f"{len(train)} for training, {len(fresh)} held out for the gate",
            champion_version=champion.version,
            samples=summary,
        )
        return champion, schema, train, fresh

    def _build(
        self,
        progress: _Progress,
        recipe: Mapping[str, Any],
        train: LabelledSamples,
        policy: LoopPolicy,
    ) -> RecipeResult:
        out_dir = self.work_dir / progress.job.id / "build"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        return self.recipe_runner(
            recipe,
            train,
            weight=policy.sample_weight,
            out_dir=out_dir,
            on_step=lambda text: self._note(progress, f"build: {text}"),
        )

    def _scorer(
        self, app_id: str, version: VersionInfo, schema: ModelSchema, *, role: str = "device"
    ) -> Scorer:
        """Score with the version's fp32 ONNX variant of ``role`` (else the device one)."""
        from pocketml.serving import extract_variant

        variant = _onnx_variant(version, role) or _onnx_variant(version, "device")
        if variant is None:
            raise InvalidInput(
                f"version {version.version} of {version.model!r} has no fp32 ONNX variant to "
                "evaluate; the gate runs what a device runs (add onnx to convert.targets)."
            )
        path = extract_variant(self.registry, app_id, variant, self.work_dir / "models")
        return onnx_scorer(path, schema)

    # -- endings ---------------------------------------------------------------------------

    def _archive(self, progress: _Progress) -> None:
        """Keep a pushed candidate out of every rollout (best effort; logged)."""
        job, version = progress.job, progress.candidate
        if version is None or progress.rollout_id is not None:
            return
        try:
            self.registry.set_stage(job.app_id, job.model, version, "archived")
            progress.log.append(f"{self.clock().isoformat()} candidate v{version} archived")
        except PocketMLError as error:
            progress.log.append(f"{self.clock().isoformat()} could not archive v{version}: {error}")

    def _end(self, progress: _Progress, state: str, **values: Any) -> Job:
        now = self.clock()
        progress.log.append(f"{now.isoformat()} {state}")
        shutil.rmtree(self.work_dir / progress.job.id, ignore_errors=True)
        return self.store.finish(progress.job, self.owner, state, now, log=progress.log, **values)

    def _fail(self, progress: _Progress, error: Exception) -> Job:
        step = progress.job.step or "start"
        message = (
            f"{step} failed: {error}"
            if isinstance(error, PocketMLError)
            else (f"{step} failed: {type(error).__name__}: {error}")
        )
        if not isinstance(error, PocketMLError):
            logger.exception("loop job %s: %s", progress.job.id, message)
        self._archive(progress)
        progress.log.append(f"{self.clock().isoformat()} {message}")
        try:
            return self._end(progress, "failed", error=message[:4000])
        except Conflict:  # taken over meanwhile: its recovery recorded why
            return self.store.get(progress.job.app_id, progress.job.id)


def _onnx_variant(version: VersionInfo, role: str) -> VariantInfo | None:
    for variant in version.variants:
        if variant.format == "onnx" and variant.precision == "fp32" and variant.role == role:
            return variant
    return None
