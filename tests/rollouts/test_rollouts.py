"""The rollout service on SQLite and PostgreSQL: state machine, validation, check-in."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rollout_kit import T0, World, open_world

from pocketml.delivery import TRANSITIONS, CheckinFacts, in_candidate_group
from pocketml.errors import Conflict, InvalidInput

STATES = ("running", "paused", "rolled_back", "completed")


def _device(device_id: str, **facts: object) -> CheckinFacts:
    base: dict[str, object] = {"platform": "android", "formats": ("onnx",), "device_class": "mid"}
    return CheckinFacts(device_id=device_id, **{**base, **facts})  # type: ignore[arg-type]


def _version_of(world: World, device: CheckinFacts) -> int | None:
    body = json.loads(world.delivery.checkin(world.app_id, device).body)
    (model,) = body["models"]
    return model["version"] if model["variant"] is not None else None


def _start(world: World, **kwargs: object):  # type: ignore[no-untyped-def]
    return world.rollouts.create(world.app_id, "digits", 2, now=T0, **kwargs)  # type: ignore[arg-type]


def _in_state(world: World, state: str):  # type: ignore[no-untyped-def]
    rollout = _start(world, schedule=[10, 50, 100])
    moves = {"paused": ["pause"], "rolled_back": ["rollback"], "completed": ["complete"]}
    for action in moves.get(state, []):
        rollout = world.rollouts.transition(world.app_id, rollout.id, action)
    assert rollout.state == state
    return rollout


def test_a_new_rollout_runs_at_the_first_step_with_the_production_version_as_control(
    world: World,
) -> None:
    rollout = _start(world, schedule=[1, 5, 25, 100])
    assert (rollout.state, rollout.step, rollout.percent) == ("running", 0, 1.0)
    assert (rollout.candidate_version, rollout.control_version) == (2, 1)
    assert len(rollout.salt) == 32


@pytest.mark.parametrize("state", STATES)
def test_every_transition_from_a_state_is_applied_or_refused_by_the_state_machine(
    world: World, state: str
) -> None:
    for action in sorted(TRANSITIONS):
        if world.rollouts.list_rollouts(world.app_id, active_only=True):
            (active,) = world.rollouts.list_rollouts(world.app_id, active_only=True)
            world.rollouts.transition(world.app_id, active.id, "rollback")
        if world.registry.get_model(world.app_id, "digits").production_version == 2:
            world.registry.set_stage(world.app_id, "digits", 1, "production")
        rollout = _in_state(world, state)
        allowed, target = TRANSITIONS[action]
        if state in allowed:
            after = world.rollouts.transition(world.app_id, rollout.id, action, reason="test")
            assert after.state == (target or state), action
            entry = world.rollouts.audit(world.app_id, subject=rollout.id, limit=1)[0]
            assert (entry.action, entry.from_state, entry.to_state) == (action, state, after.state)
            assert (entry.actor, entry.reason) == ("admin", "test")
        else:
            with pytest.raises(Conflict, match=f"it is {state}"):
                world.rollouts.transition(world.app_id, rollout.id, action)
            assert world.rollouts.get(world.app_id, rollout.id).state == state


def test_advance_walks_the_schedule_and_refuses_past_the_last_step(world: World) -> None:
    rollout = _start(world, schedule=[10, 100])
    rollout = world.rollouts.transition(world.app_id, rollout.id, "advance")
    assert (rollout.step, rollout.percent) == (1, 100.0)
    with pytest.raises(Conflict, match="last step"):
        world.rollouts.transition(world.app_id, rollout.id, "advance")


def test_complete_promotes_the_candidate(world: World) -> None:
    rollout = _start(world)
    world.rollouts.transition(world.app_id, rollout.id, "complete")
    assert world.registry.get_model(world.app_id, "digits").production_version == 2
    assert _version_of(world, _device("anyone")) == 2


def test_a_second_active_rollout_on_the_model_is_a_conflict(world: World) -> None:
    _start(world)
    world.push(seed=3)
    with pytest.raises(Conflict, match="already has an active rollout"):
        world.rollouts.create(world.app_id, "digits", 3)


def test_a_finished_rollout_frees_the_channel(world: World) -> None:
    first = _start(world)
    world.rollouts.transition(world.app_id, first.id, "rollback")
    assert _start(world).state == "running"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"schedule": [5, 50]}, "must reach 100"),
        ({"schedule": [0, 100]}, r"in \(0, 100\]"),
        ({"schedule": [50, 150]}, r"in \(0, 100\]"),
        ({"schedule": [50, 10, 100]}, "increase"),
        ({"schedule": []}, "1 to 20 steps"),
        ({"channel": "beta"}, "channel must be one of"),
        ({"on_breach": "ignore"}, "on_breach"),
        ({"min_samples": 0}, "min_samples"),
    ],
)
def test_invalid_rollouts_are_refused(world: World, kwargs: dict, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        _start(world, **kwargs)


def test_a_candidate_without_a_variant_for_a_targeted_class_is_refused_naming_it(
    world: World,
) -> None:
    targeting = [{"field": "device_class", "in": ["mid", "low"]}]
    with pytest.raises(InvalidInput, match="device class low"):
        _start(world, targeting=targeting)


def test_the_production_version_cannot_be_rolled_out_again(world: World) -> None:
    with pytest.raises(InvalidInput, match="already in production"):
        world.rollouts.create(world.app_id, "digits", 1)


def test_check_in_gives_the_candidate_exactly_to_the_bucketed_devices(world: World) -> None:
    rollout = _start(world, schedule=[30, 100])
    for i in range(60):
        device = _device(f"device-{i}")
        expected = 2 if in_candidate_group(rollout.salt, device.device_id, 30) else 1
        assert _version_of(world, device) == expected


def test_a_rolled_back_rollout_returns_everyone_to_the_control(world: World) -> None:
    rollout = _start(world, schedule=[100])
    assert _version_of(world, _device("a")) == 2
    world.rollouts.transition(world.app_id, rollout.id, "rollback")
    assert _version_of(world, _device("a")) == 1


def test_devices_outside_the_rollout_targeting_keep_the_control(world: World) -> None:
    _start(world, schedule=[100], targeting=[{"field": "country", "in": ["DE"]}])
    assert _version_of(world, _device("a", country="DE")) == 2
    assert _version_of(world, _device("a", country="FR")) == 1


def test_devices_outside_the_channel_targeting_get_no_version(world: World) -> None:
    world.rollouts.set_targeting(world.app_id, "digits", [{"field": "app_version", "min": "2.0"}])
    assert _version_of(world, _device("a", app_version="2.1")) == 1
    body = json.loads(world.delivery.checkin(world.app_id, _device("a", app_version="1.9")).body)
    assert body["models"][0]["version"] is None
    assert body["models"][0]["package"] is None


def test_a_restarted_service_resumes_the_rollout_in_the_same_state(
    world: World, database_url: str
) -> None:
    rollout = _start(world, schedule=[10, 50, 100])
    rollout = world.rollouts.transition(world.app_id, rollout.id, "advance", now=T0)
    rollout = world.rollouts.transition(world.app_id, rollout.id, "pause")
    world.registry.close()
    again = open_world(database_url, world.tmp, world.app_id)
    try:
        reloaded = again.rollouts.get(again.app_id, rollout.id)
        assert (reloaded.state, reloaded.step, reloaded.percent) == ("paused", 1, 50.0)
        assert reloaded.salt == rollout.salt
        device = next(
            _device(f"d{i}") for i in range(200) if in_candidate_group(rollout.salt, f"d{i}", 50)
        )
        assert _version_of(again, device) == 2
        resumed = again.rollouts.transition(
            again.app_id, rollout.id, "resume", now=T0 + timedelta(hours=1)
        )
        assert resumed.state == "running"
    finally:
        again.registry.close()
