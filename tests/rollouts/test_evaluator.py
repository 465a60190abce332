"""The evaluator on real telemetry rows: breach -> rollback, healthy -> advance, the lease."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import numpy as np
from rollout_kit import T0, World, add_events, open_world

from pocketml.delivery import RolloutEvaluator, evaluate_rollouts
from pocketml.registry import ModelCreate
from pocketml.testing import DIGITS_SCHEMA

DAY = timedelta(days=1)


def _latencies(seed: int, n: int, median: float) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(np.log(median), 0.2, n))


def _start(world: World, **kwargs: object):  # type: ignore[no-untyped-def]
    options = {"schedule": [10, 50, 100], "min_dwell_s": 3600, "min_samples": 100, **kwargs}
    return world.rollouts.create(world.app_id, "digits", 2, now=T0, **options)  # type: ignore[arg-type]


def test_a_latency_regression_rolls_the_candidate_back_and_records_why(world: World) -> None:
    rollout = _start(world)
    ts = T0.timestamp() + 60
    add_events(world, 2, ts=ts, latencies=_latencies(1, 300, 60.0))
    add_events(world, 1, ts=ts, latencies=_latencies(2, 300, 20.0))

    (outcome,) = evaluate_rollouts(world.rollouts, now=T0 + timedelta(minutes=10))

    assert outcome.action == "rollback"
    after = world.rollouts.get(world.app_id, rollout.id)
    assert (after.state, after.percent) == ("rolled_back", 0.0)
    entry = world.rollouts.audit(world.app_id, subject=rollout.id, limit=1)[0]
    assert (entry.action, entry.actor) == ("rollback", "evaluator")
    assert "latency_p95_ratio" in entry.reason and "mann-whitney-u" in entry.reason
    latency = next(g for g in entry.details["guardrails"] if g["metric"] == "latency_p95_ratio")
    assert latency["status"] == "breach" and latency["p_value"] < 0.01
    assert latency["n_candidate"] == 300 and latency["candidate"] > 2 * latency["control"]


def test_an_error_spike_pauses_when_the_rollout_says_pause(world: World) -> None:
    rollout = _start(world, on_breach="pause")
    ts = T0.timestamp() + 60
    add_events(world, 2, ts=ts, latencies=_latencies(1, 200, 20.0), errors=40)
    add_events(world, 1, ts=ts, latencies=_latencies(2, 200, 20.0), errors=1)

    (outcome,) = evaluate_rollouts(world.rollouts, now=T0 + DAY)

    assert outcome.action == "pause"
    assert "error_rate" in outcome.reason and "two-proportion-z" in outcome.reason
    assert world.rollouts.get(world.app_id, rollout.id).state == "paused"


def test_a_regression_on_too_few_samples_does_not_act(world: World) -> None:
    rollout = _start(world)
    ts = T0.timestamp() + 60
    add_events(world, 2, ts=ts, latencies=_latencies(1, 30, 80.0), errors=20)
    add_events(world, 1, ts=ts, latencies=_latencies(2, 30, 20.0))

    (outcome,) = evaluate_rollouts(world.rollouts, now=T0 + DAY)

    assert outcome.action == "wait"
    after = world.rollouts.get(world.app_id, rollout.id)
    assert (after.state, after.step) == ("running", 0)
    statuses = {g["status"] for g in after.last_evaluation["guardrails"]}
    assert statuses == {"insufficient"}


def test_a_healthy_step_advances_only_after_its_dwell_time(world: World) -> None:
    rollout = _start(world)
    ts = T0.timestamp() + 60
    add_events(world, 2, ts=ts, latencies=_latencies(1, 200, 20.0))
    add_events(world, 1, ts=ts, latencies=_latencies(2, 200, 20.0))

    early = evaluate_rollouts(world.rollouts, now=T0 + timedelta(minutes=30))
    late = evaluate_rollouts(world.rollouts, now=T0 + timedelta(hours=2))

    assert [o.action for o in early] == ["wait"]
    assert [o.action for o in late] == ["advance"]
    after = world.rollouts.get(world.app_id, rollout.id)
    assert (after.step, after.percent) == (1, 50.0)
    assert after.step_started_at == T0 + timedelta(hours=2)


def test_a_healthy_last_step_completes_and_promotes(world: World) -> None:
    _start(world, schedule=[100], min_dwell_s=0)
    add_events(world, 2, ts=T0.timestamp() + 1, latencies=_latencies(1, 150, 20.0))

    (outcome,) = evaluate_rollouts(world.rollouts, now=T0 + DAY)

    assert outcome.action == "complete"
    assert world.registry.get_model(world.app_id, "digits").production_version == 2


def test_telemetry_before_the_step_started_is_not_counted(world: World) -> None:
    _start(world)
    add_events(world, 2, ts=T0.timestamp() - 10, latencies=_latencies(1, 500, 20.0))

    (outcome,) = evaluate_rollouts(world.rollouts, now=T0 + DAY)

    assert outcome.action == "wait" and "samples 0/100" in outcome.reason


def test_a_stale_evaluator_cannot_advance_a_step_twice(world: World) -> None:
    rollout = _start(world, min_dwell_s=0)
    add_events(world, 2, ts=T0.timestamp() + 1, latencies=_latencies(1, 150, 20.0))
    stale = world.rollouts.get(world.app_id, rollout.id)
    world.rollouts.transition(world.app_id, rollout.id, "advance", now=T0)

    from pocketml.delivery.evaluator import _evaluate_one

    outcome = _evaluate_one(world.rollouts, stale, T0 + DAY)

    assert outcome.action == "skipped"
    assert world.rollouts.get(world.app_id, rollout.id).step == 1


def test_two_evaluators_racing_on_postgresql_advance_the_rollout_once(
    postgres_url: str, tmp_path: Path
) -> None:
    worlds = [open_world(postgres_url, tmp_path)]
    worlds.append(open_world(postgres_url, tmp_path, worlds[0].app_id))
    try:
        first = worlds[0]
        first.registry.create_model(first.app_id, ModelCreate(name="digits", schema=DIGITS_SCHEMA))
        first.push(seed=1)
        first.registry.set_stage(first.app_id, "digits", 1, "production")
        first.push(seed=2)
        rollout = _start(first, min_dwell_s=0)
        add_events(first, 2, ts=T0.timestamp() + 1, latencies=_latencies(1, 150, 20.0))
        evaluators = [
            RolloutEvaluator(w.rollouts, owner=f"replica-{i}") for i, w in enumerate(worlds)
        ]
        barrier = threading.Barrier(2)
        results: list[object] = [None, None]

        def run(i: int) -> None:
            barrier.wait()
            results[i] = evaluators[i].run_once(T0 + DAY)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        ran = [r for r in results if r is not None]
        assert len(ran) == 1, "exactly one replica holds the lease"
        after = first.rollouts.get(first.app_id, rollout.id)
        assert (after.step, after.percent) == (1, 50.0)
        advances = [e for e in first.rollouts.audit(first.app_id) if e.action == "advance"]
        assert len(advances) == 1
    finally:
        for w in worlds:
            w.registry.close()


def test_the_lease_passes_to_another_owner_only_after_it_expires(world: World) -> None:
    store = world.rollouts.store
    now = T0.timestamp()
    assert store.acquire_lease("l", "a", now, 30)
    assert not store.acquire_lease("l", "b", now + 10, 30)
    assert store.acquire_lease("l", "a", now + 10, 30)  # renewal by the holder
    assert store.acquire_lease("l", "b", now + 41, 30)
    store.release_lease("l", "b")
    assert store.acquire_lease("l", "a", now + 42, 30)


def test_the_background_loop_evaluates_and_releases_its_lease(world: World) -> None:
    import asyncio

    from pocketml.db import utcnow

    rollout = world.rollouts.create(
        world.app_id, "digits", 2, schedule=[10, 100], min_dwell_s=0, min_samples=100
    )
    add_events(world, 2, ts=rollout.step_started_at.timestamp(), latencies=[20.0] * 120)
    evaluator = RolloutEvaluator(world.rollouts, interval_s=60, owner="loop")

    asyncio.run(evaluator.run_forever(asyncio.Event(), max_passes=1))

    assert world.rollouts.get(world.app_id, rollout.id).step == 1
    assert world.rollouts.store.acquire_lease("rollout-evaluator", "other", utcnow().timestamp(), 5)


def test_with_no_running_rollout_a_pass_takes_no_lease(world: World) -> None:
    from pocketml.db import utcnow

    idle = RolloutEvaluator(world.rollouts, interval_s=60, owner="idle")
    assert idle.run_once() == []
    # nothing was written: another replica can take the lease at once
    assert world.rollouts.store.acquire_lease("rollout-evaluator", "other", utcnow().timestamp(), 5)
