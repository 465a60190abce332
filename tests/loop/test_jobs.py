"""Retraining jobs on a real registry and rollouts (SQLite and PostgreSQL): the steps, the
verdicts, failures that leave the registry as it was, leases, restarts and triggers.

The sample source and the recipe runner are injected (the sample store and the distilling
build are other rooms): the recipe runner writes a BUILD_DIR holding one of two real ONNX
digits models, so the push, the gate and the rollout are the real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from loop_kit import (
    RECIPE,
    Clock,
    DigitsModels,
    FakeRecipe,
    MemorySamples,
    fleet_samples,
    restamped,
    write_build_dir,
)

from pocketml.delivery import DeliveryService
from pocketml.errors import ConversionError, Unavailable, ValidationFailed
from pocketml.loop import LabelledSamples, LoopService, RecipeResult
from pocketml.monitor.alerts import AlertService, MetricSources, RuleSpec, telemetry_sources
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, ModelCreate, Registry
from pocketml.server._loop import make_pusher
from pocketml.telemetry import Feedback, TelemetryStore
from pocketml.testing import model_variant, push_to_registry

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class LoopWorld:
    registry: Registry
    app_id: str
    delivery: DeliveryService
    samples: MemorySamples
    models: DigitsModels
    tmp: Path
    clock: Clock
    opened: list[Registry] = field(default_factory=list)

    def service(
        self,
        recipe: Callable[..., RecipeResult],
        *,
        pusher: Any = None,
        owner: str = "replica-a",
        registry: Registry | None = None,
        alerts: AlertService | None = None,
    ) -> LoopService:
        reg = registry or self.registry
        delivery = self.delivery if registry is None else _delivery(reg)
        return LoopService(
            reg.store.engine,
            reg,
            delivery,
            alerts,
            self.samples,
            recipe,  # type: ignore[arg-type]
            pusher or make_pusher(reg),
            self.clock,
            work_dir=self.tmp / f"work-{owner}",
            owner=owner,
            lease_ttl_s=600,
        )

    def replica(self) -> Registry:
        """A second registry (its own engine) on the same database, as another replica."""
        other = Registry(
            self.registry.store.engine.url.render_as_string(hide_password=False),
            LocalArtifactStore(self.tmp / "artifacts"),
            _master_key(),
            tmp_dir=self.tmp,
        )
        other.open()
        self.opened.append(other)
        return other

    def promote(self, model_file: Path) -> int:
        """Push ``model_file`` as a new production version of digits."""
        build = write_build_dir(self.tmp / f"champion-{model_file.stem}", model_file, {})
        version = make_pusher(self.registry)(
            self.app_id, "digits", build, {"params": {"config": RECIPE}}
        )
        self.registry.set_stage(self.app_id, "digits", version, "production")
        return version

    def versions(self) -> list[tuple[int, str]]:
        page = self.registry.list_versions(self.app_id, "digits", limit=100)
        return sorted((v.version, v.stage) for v in page.items)

    def rollouts(self) -> list[Any]:
        return self.delivery.rollouts.list_rollouts(self.app_id)


def _master_key() -> MasterKey:
    return MasterKey.from_b64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")


def _delivery(registry: Registry) -> DeliveryService:
    delivery = DeliveryService(registry)
    delivery.open()
    return delivery


@pytest.fixture
def world(database_url: str, tmp_path: Path, digits_models: DigitsModels) -> Iterator[LoopWorld]:
    """App "app-a" with model digits; the poor model in production (v1); 539 samples."""
    registry = Registry(
        database_url, LocalArtifactStore(tmp_path / "artifacts"), _master_key(), tmp_dir=tmp_path
    )
    registry.open()
    try:
        app_id = registry.create_app("app-a").app.id
        registry.create_model(app_id, ModelCreate(name="digits", schema=digits_models.schema))
        samples = MemorySamples(fleet_samples(digits_models, (T0 - timedelta(hours=1)).timestamp()))
        w = LoopWorld(
            registry, app_id, _delivery(registry), samples, digits_models, tmp_path, Clock(T0)
        )
        w.promote(digits_models.poor)
        yield w
        for other in w.opened:
            other.close()
    finally:
        registry.close()


def test_a_job_blesses_a_better_candidate_and_starts_its_rollout(world: LoopWorld) -> None:
    recipe = FakeRecipe(world.models.good, world.models)
    service = world.service(recipe)

    job, created = service.run(world.app_id, "digits", actor="admin:test")
    outcome = service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert created and outcome["ran"] == job.id
    assert done.state == "succeeded", done.error
    assert [s["step"] for s in done.steps] == ["collect", "build", "push", "gate", "rollout"]
    assert all(s["seconds"] >= 0 for s in done.steps)
    assert done.champion_version == 1 and done.candidate_version == 2
    assert done.gate is not None and done.gate["blessed"] is True
    assert done.gate["fresh"]["gain"] > 0.5
    [rollout] = world.rollouts()
    assert (rollout.id, rollout.candidate_version, rollout.state) == (done.rollout_id, 2, "running")
    assert rollout.percent == 5.0
    version = world.registry.get_version(world.app_id, "digits", 2)
    assert version.parent_version == 1
    assert version.run_record["loop"]["job_id"] == job.id


def test_the_gate_never_sees_a_sample_the_candidate_trained_on(world: LoopWorld) -> None:
    recipe = FakeRecipe(world.models.good, world.models)
    service = world.service(recipe)

    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    [training] = recipe.training
    trained = set(training.sample_id.tolist())
    assert done.samples["training"] == len(trained) > 0
    assert done.samples["fresh"] > 0
    assert done.samples["training"] + done.samples["fresh"] == done.samples["kept"]
    assert done.gate is not None and done.gate["fresh"]["n"] == done.samples["fresh"]
    assert len(trained) < len(world.samples.samples)


def test_a_worse_candidate_is_rejected_archived_and_never_rolled_out(world: LoopWorld) -> None:
    world.promote(world.models.good)  # v2, the champion
    service = world.service(FakeRecipe(restamped(world.models.poor, "retrain"), world.models))

    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert done.state == "rejected"
    assert done.gate is not None and done.gate["blessed"] is False
    assert done.gate["reason"].startswith("rejected: golden holdout accuracy")
    assert done.gate["golden"]["gain"] < -0.5
    assert done.candidate_version is not None
    assert (done.candidate_version, "archived") in world.versions()
    assert world.rollouts() == []


def test_a_failing_recipe_leaves_the_registry_as_it_was(world: LoopWorld) -> None:
    before = world.versions()
    recipe = FakeRecipe(world.models.good, world.models, fail=ConversionError("parity failed"))
    service = world.service(recipe)

    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert done.state == "failed"
    assert done.error == "build failed: parity failed"
    assert done.step == "build"
    assert world.versions() == before
    assert world.rollouts() == []
    assert not (world.tmp / "work-replica-a" / job.id).exists()


def test_a_failing_push_leaves_the_registry_as_it_was(world: LoopWorld) -> None:
    before = world.versions()

    def broken_push(*_: Any) -> int:
        raise Unavailable("the artifact store is down")

    service = world.service(FakeRecipe(world.models.good, world.models), pusher=broken_push)
    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert (done.state, done.step, done.error) == (
        "failed",
        "push",
        "push failed: the artifact store is down",
    )
    assert world.versions() == before


def test_a_rollout_that_cannot_start_archives_the_blessed_candidate(world: LoopWorld) -> None:
    other = push_to_registry(
        world.registry, world.app_id, "digits", [model_variant(world.tmp, "other")]
    )
    world.delivery.rollouts.create(world.app_id, "digits", other.version)
    service = world.service(FakeRecipe(world.models.good, world.models))

    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert (done.state, done.step) == ("failed", "rollout")
    assert done.error is not None and "active rollout" in done.error
    assert (done.candidate_version, "archived") in world.versions()


def test_a_model_without_a_production_version_fails_with_the_fix(world: LoopWorld) -> None:
    world.registry.create_model(
        world.app_id, ModelCreate(name="fresh-model", schema=world.models.schema)
    )
    service = world.service(FakeRecipe(world.models.good, world.models))

    job, _ = service.run(world.app_id, "fresh-model", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert done.state == "failed"
    assert done.error is not None and "promote one first" in done.error


def test_two_triggers_at_once_make_one_job(world: LoopWorld) -> None:
    services = [
        world.service(FakeRecipe(world.models.good, world.models), owner=f"r{i}", registry=reg)
        for i, reg in enumerate((world.replica(), world.replica()))
    ]
    barrier = threading.Barrier(2)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def trigger(service: LoopService) -> None:
        barrier.wait()
        try:
            job, created = service.run(world.app_id, "digits", trigger="alert", actor="loop")
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
            raise
        results.append((job.id, created))

    threads = [threading.Thread(target=trigger, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len({job_id for job_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, True]
    assert (
        len(
            world.service(FakeRecipe(world.models.good, world.models)).list_jobs(
                world.app_id, "digits"
            )
        )
        == 1
    )


def test_two_replicas_run_a_job_once(world: LoopWorld) -> None:
    release = threading.Event()
    recipe_a = FakeRecipe(world.models.good, world.models, release=release)
    recipe_b = FakeRecipe(world.models.good, world.models)
    replica_a = world.service(recipe_a, owner="a", registry=world.replica())
    replica_b = world.service(recipe_b, owner="b", registry=world.replica())
    job, _ = replica_a.run(world.app_id, "digits", actor="admin:test")

    runner = threading.Thread(target=replica_a.tick, args=(T0,))
    runner.start()
    assert recipe_a.entered.wait(60)
    outcome_b = replica_b.tick(T0)
    release.set()
    runner.join()

    assert outcome_b["ran"] is None
    assert recipe_b.training == []
    assert len(recipe_a.training) == 1
    assert replica_b.get_job(world.app_id, job.id).state == "succeeded"


def test_a_job_left_running_by_a_dead_server_is_failed_on_the_next_pass(
    world: LoopWorld,
) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models))
    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    started = T0 - timedelta(hours=2)
    assert service.store.claim(job.id, "dead-replica", started, ttl_s=600)
    service.store.update(job, "dead-replica", step="build")

    outcome = service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert outcome["recovered"] == [job.id]
    assert (done.state, done.error) == (
        "failed",
        "server restarted during step build; the job was not resumed",
    )
    again, created = service.run(world.app_id, "digits", actor="admin:test")
    assert created and again.id != job.id


def test_a_live_lease_is_not_recovered(world: LoopWorld) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models))
    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    assert service.store.claim(job.id, "busy-replica", T0, ttl_s=600)

    outcome = service.tick(T0 + timedelta(minutes=5))

    assert outcome["recovered"] == []
    assert service.get_job(world.app_id, job.id).state == "running"


def test_recovery_archives_a_candidate_pushed_before_the_crash(world: LoopWorld) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models))
    pushed = push_to_registry(
        world.registry, world.app_id, "digits", [model_variant(world.tmp, "half")]
    )
    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    assert service.store.claim(job.id, "dead-replica", T0 - timedelta(hours=1), ttl_s=60)
    service.store.update(job, "dead-replica", step="gate", candidate_version=pushed.version)

    service.tick(T0)

    assert (pushed.version, "archived") in world.versions()
    assert service.get_job(world.app_id, job.id).state == "failed"


def test_the_schedule_trigger_starts_a_job_once_per_period(world: LoopWorld) -> None:
    # each run's candidate is as poor as the champion: rejected, so no canary holds the model
    service = world.service(FakeRecipe(restamped(world.models.poor, "again"), world.models))
    service.set_policy(world.app_id, "digits", {"triggers": {"schedule_s": 3600}}, actor="t")

    first = service.tick(T0)
    world.clock.now = T0 + timedelta(minutes=10)
    second = service.tick(world.clock.now)
    world.clock.now = T0 + timedelta(hours=2)
    third = service.tick(world.clock.now)

    assert len(first["queued"]) == 1 and second["queued"] == [] and len(third["queued"]) == 1
    jobs = service.list_jobs(world.app_id, "digits")
    assert [j.trigger for j in jobs] == ["schedule", "schedule"]
    assert jobs[0].trigger_details == {"every_s": 3600.0}


def test_new_labels_trigger_a_job_once(world: LoopWorld) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models, fail=ValueError("x")))
    service.set_policy(world.app_id, "digits", {"triggers": {"min_new_labels": 100}}, actor="t")

    first = service.tick(T0)
    second = service.tick(T0 + timedelta(minutes=1))

    assert len(first["queued"]) == 1 and second["queued"] == []
    [job] = service.list_jobs(world.app_id, "digits")
    assert job.trigger == "labels" and job.trigger_details == {"new_labels": 539}


def test_a_disabled_policy_triggers_nothing(world: LoopWorld) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models))
    policy = {"enabled": False, "triggers": {"schedule_s": 60}}
    service.set_policy(world.app_id, "digits", policy, actor="t")

    assert service.tick(T0)["queued"] == []


@pytest.mark.parametrize(
    ("policy", "named"),
    [
        ({"gate": {"max_drop": 2}}, "gate.max_drop"),
        ({"triggers": {"alert_metrics": ["nope"]}}, "unknown alert metric"),
        ({"sample_weight": 0}, "sample_weight"),
        ({"holdout_share": 1.0}, "holdout_share"),
        ({"trust": {"max_per_device": 10, "typo": 1}}, "trust.typo"),
        ({"rollout": {"schedule": [50, 10]}}, "schedule must increase"),
        ({"rollout": {"guardrails": {"thresholds": {"x": 1}}}}, "guardrail metric"),
    ],
)
def test_an_invalid_policy_is_refused_and_the_old_one_kept(
    world: LoopWorld, policy: dict[str, Any], named: str
) -> None:
    service = world.service(FakeRecipe(world.models.good, world.models))
    service.set_policy(world.app_id, "digits", {"sample_weight": 3}, actor="t")

    with pytest.raises(ValidationFailed, match=named.replace(".", r"\.")):
        service.set_policy(world.app_id, "digits", policy, actor="t")

    assert service.get_policy(world.app_id, "digits").sample_weight == 3


def test_the_samples_count_with_the_policys_weight_in_the_recipe(world: LoopWorld) -> None:
    seen: list[int] = []
    base = FakeRecipe(world.models.good, world.models)

    def recipe(*args: Any, weight: int, **kwargs: Any) -> RecipeResult:
        seen.append(weight)
        return base(*args, weight=weight, **kwargs)

    service = world.service(recipe)
    service.set_policy(world.app_id, "digits", {"sample_weight": 4}, actor="t")
    service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    assert seen == [4]
    assert np.all(np.isin(base.training[0].device_id, world.samples.samples.device_id))


def _realised_accuracy_alert(world: LoopWorld, at: datetime) -> AlertService:
    """An accuracy_realised < 0.8 rule, 100 labelled inferences (20 right), evaluated."""
    telemetry = TelemetryStore(world.registry.store.engine)
    alerts = AlertService(world.registry, MetricSources(telemetry_sources(telemetry)))
    spec = RuleSpec("accuracy", "accuracy_realised", "<", 0.8, window_s=3600.0, min_n=50)
    alerts.create_rule(world.app_id, "digits", spec, actor="test")
    ids = [f"p{i:03d}" for i in range(100)]
    events = [
        {"ts": at.timestamp(), "model": "digits", "version": 1, "type": "inference",
         "latency_ms": 20.0, "confidence": 0.9, "source": "device", "prediction_id": pid,
         "label": "3"}
        for pid in ids
    ]  # fmt: skip
    telemetry.insert_batch(
        world.app_id, "b-alert", "dev-1", {"device_class": "android-mid"}, events, at
    )
    for i, pid in enumerate(ids):
        label = "3" if i < 20 else "4"
        feedback = Feedback(pid, "dev-1", "digits", at.timestamp(), version=1, label=label)
        telemetry.upsert_feedback(world.app_id, feedback, at)
    alerts.evaluate(at + timedelta(minutes=1))
    assert [a.state for a in alerts.list_alerts(world.app_id)] == ["firing"]
    return alerts


def test_a_firing_alert_starts_one_job_per_episode(world: LoopWorld) -> None:
    alerts = _realised_accuracy_alert(world, T0 - timedelta(minutes=5))
    service = world.service(FakeRecipe(world.models.good, world.models), alerts=alerts)
    service.set_policy(world.app_id, "digits", {"min_labels_for_alert": 500}, actor="t")

    first = service.tick(T0)
    [alert] = alerts.list_alerts(world.app_id)
    later = service.tick(T0 + timedelta(minutes=10))

    assert len(first["queued"]) == 1 and later["queued"] == []
    [job] = service.list_jobs(world.app_id, "digits")
    assert job.trigger == "alert"
    assert job.trigger_details["alert_id"] == alert.id
    assert job.trigger_details["metric"] == "accuracy_realised"
    assert job.trigger_details["labels"] == 539


def test_an_alert_waits_for_enough_labels(world: LoopWorld) -> None:
    alerts = _realised_accuracy_alert(world, T0 - timedelta(minutes=5))
    service = world.service(FakeRecipe(world.models.good, world.models), alerts=alerts)
    service.set_policy(world.app_id, "digits", {"min_labels_for_alert": 1000}, actor="t")

    assert service.tick(T0)["queued"] == []


def test_devices_sending_flipped_labels_are_left_out_of_the_job(world: LoopWorld) -> None:
    world.promote(world.models.good)  # a confident teacher
    samples = world.samples.samples
    liars = np.isin(samples.device_id, ["dev-3", "dev-7"])
    flipped = np.where(liars, (samples.labels + 1) % 10, samples.labels)
    world.samples.samples = LabelledSamples(
        **{**{k: getattr(samples, k) for k in samples.__dataclass_fields__}, "labels": flipped}
    )
    recipe = FakeRecipe(restamped(world.models.good, "again"), world.models)
    service = world.service(recipe)

    job, _ = service.run(world.app_id, "digits", actor="admin:test")
    service.tick(T0)

    done = service.get_job(world.app_id, job.id)
    assert sorted(done.samples["excluded_devices"]) == ["dev-3", "dev-7"]
    assert {e["device_id"] for e in done.samples["excluded"]} == {"dev-3", "dev-7"}
    [training] = recipe.training
    assert not np.isin(training.device_id, ["dev-3", "dev-7"]).any()


def test_a_restarted_replica_ends_its_own_job_without_waiting_for_the_lease(
    world: LoopWorld,
) -> None:
    before = world.service(FakeRecipe(world.models.good, world.models), owner="home-1")
    job, _ = before.run(world.app_id, "digits", actor="admin:test")
    assert before.store.claim(job.id, "home-1", T0, ttl_s=600)  # then the process died
    after = world.service(FakeRecipe(world.models.good, world.models), owner="home-1")

    outcome = after.tick(T0 + timedelta(seconds=30))

    assert outcome["recovered"] == [job.id]
    assert after.get_job(world.app_id, job.id).state == "failed"


def test_a_replica_that_lost_its_lease_stops_without_pushing(world: LoopWorld) -> None:
    release = threading.Event()
    slow = FakeRecipe(world.models.good, world.models, release=release)
    replica_a = world.service(slow, owner="a", registry=world.replica())
    replica_b = world.service(FakeRecipe(world.models.good, world.models), owner="b")
    before = world.versions()
    job, _ = replica_a.run(world.app_id, "digits", actor="admin:test")

    runner = threading.Thread(target=replica_a.tick, args=(T0,))
    runner.start()
    assert slow.entered.wait(60)
    recovered = replica_b.tick(T0 + timedelta(hours=1))  # a's lease (600 s) expired
    release.set()
    runner.join()

    done = replica_b.get_job(world.app_id, job.id)
    assert recovered["recovered"] == [job.id]
    assert (done.state, done.error) == (
        "failed",
        "server restarted during step build; the job was not resumed",
    )
    assert world.versions() == before


def test_a_stopping_server_ends_its_running_job_at_the_next_step(world: LoopWorld) -> None:
    release = threading.Event()
    slow = FakeRecipe(world.models.good, world.models, release=release)
    service = world.service(slow)
    job, _ = service.run(world.app_id, "digits", actor="admin:test")

    runner = threading.Thread(target=service.tick, args=(T0,))
    runner.start()
    assert slow.entered.wait(60)
    service.request_stop()
    release.set()
    runner.join()

    done = service.get_job(world.app_id, job.id)
    assert (done.state, done.error) == (
        "failed",
        "build failed: the server shut down; the job was not resumed",
    )
    assert done.candidate_version is None


def test_no_job_starts_while_the_previous_candidates_canary_runs(world: LoopWorld) -> None:
    # The first job's candidate is blessed and its rollout is running: a schedule that is
    # due again waits for that canary instead of building a candidate that cannot start.
    service = world.service(FakeRecipe(world.models.good, world.models))
    service.set_policy(world.app_id, "digits", {"triggers": {"schedule_s": 3600}}, actor="t")
    first = service.tick(T0)
    [job] = service.list_jobs(world.app_id, "digits")
    assert job.state == "succeeded" and job.rollout_id is not None

    later = service.tick(T0 + timedelta(hours=2))

    assert len(first["queued"]) == 1 and later["queued"] == []


def test_an_alert_after_a_job_needs_labels_that_arrived_since_that_job(world: LoopWorld) -> None:
    # A job reached a verdict at T0 - 30 min on the 539 samples (captured at T0 - 1 h); then
    # a new alert episode fires. The same samples are no new evidence: no second job.
    world.clock.now = T0 - timedelta(minutes=30)
    recipe = FakeRecipe(world.models.good, world.models)
    earlier = world.service(recipe)
    first, _ = earlier.run(world.app_id, "digits", actor="admin:test")
    earlier.tick(world.clock.now)
    assert earlier.get_job(world.app_id, first.id).state in ("succeeded", "rejected")
    alerts = _realised_accuracy_alert(world, T0 - timedelta(minutes=5))
    world.clock.now = T0
    service = world.service(recipe, alerts=alerts)
    service.set_policy(world.app_id, "digits", {"min_labels_for_alert": 100}, actor="t")

    assert service.tick(T0)["queued"] == []
    assert [j.id for j in service.list_jobs(world.app_id, "digits")] == [first.id]


def test_a_failed_job_leaves_its_evidence_to_a_retry_after_the_wait(world: LoopWorld) -> None:
    # A job that failed (a crash, a restart, a broken build) consumed nothing: the alert and
    # the labels start a retry, but only once retry_failed_after_s has passed.
    world.clock.now = T0 - timedelta(minutes=8)
    broken = FakeRecipe(world.models.good, world.models, fail=ValueError("x"))
    earlier = world.service(broken)
    first, _ = earlier.run(world.app_id, "digits", actor="admin:test")
    earlier.tick(world.clock.now)
    assert earlier.get_job(world.app_id, first.id).state == "failed"
    alerts = _realised_accuracy_alert(world, T0 - timedelta(minutes=5))
    service = world.service(broken, alerts=alerts)
    service.set_policy(world.app_id, "digits", {"min_labels_for_alert": 100}, actor="t")

    world.clock.now = T0
    assert service.tick(T0)["queued"] == []  # 8 minutes after the failure: still waiting
    world.clock.now = T0 + timedelta(minutes=3)
    retried = service.tick(T0 + timedelta(minutes=3))["queued"]

    assert len(retried) == 1
    assert service.get_job(world.app_id, retried[0]).trigger == "alert"


def test_a_candidate_pushed_as_the_lease_ran_out_is_archived(world: LoopWorld) -> None:
    # Replica a's push completes just after replica b recovered the job (a's lease had
    # expired): whoever learns of the candidate last must keep it out of every rollout.
    replica_b = world.service(FakeRecipe(world.models.good, world.models), owner="b")
    real_push = make_pusher(world.registry)

    def push_then_lose_the_lease(*args: Any) -> int:
        version = int(real_push(*args))
        replica_b.tick(T0 + timedelta(hours=1))  # a's lease (600 s) expired meanwhile
        return version

    replica_a = world.service(
        FakeRecipe(world.models.good, world.models), owner="a", pusher=push_then_lose_the_lease
    )
    job, _ = replica_a.run(world.app_id, "digits", actor="admin:test")

    replica_a.tick(T0)

    done = replica_a.get_job(world.app_id, job.id)
    assert done.state == "failed" and done.error is not None
    assert done.error.startswith("server restarted during step push")
    pushed = [v for v, _ in world.versions() if v not in (1,)]
    assert pushed and all((v, "archived") in world.versions() for v in pushed)
    assert world.rollouts() == []
