"""A/B experiments on SQLite and PostgreSQL: split, results with 95 % CIs, stop, promote."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from rollout_kit import T0, World, add_events

from pocketml.delivery import Arm, ArmSample, CheckinFacts
from pocketml.delivery.experiments import arm_result
from pocketml.errors import Conflict, InvalidInput

ARMS = [{"name": "control", "version": 1, "weight": 3}, {"name": "new", "version": 2, "weight": 1}]


def _version_of(world: World, device_id: str) -> int:
    device = CheckinFacts(device_id=device_id, platform="android", formats=("onnx",))
    body = json.loads(world.delivery.checkin(world.app_id, device).body)
    return int(body["models"][0]["version"])


def test_arm_result_gives_the_difference_and_its_normal_interval() -> None:
    control = ArmSample(inferences=900, errors=100)  # 10 %
    sample = ArmSample(inferences=950, errors=50)  # 5 %
    result = arm_result(Arm("new", 2, 1), sample, control, "error_rate")
    assert result.n == 1000 and result.value == pytest.approx(0.05)
    assert result.difference == pytest.approx(-0.05)
    half = 1.96 * ((0.05 * 0.95 + 0.1 * 0.9) / 1000) ** 0.5
    assert result.ci_low == pytest.approx(-0.05 - half, rel=1e-3)
    assert result.ci_high == pytest.approx(-0.05 + half, rel=1e-3)


def test_an_arm_without_observations_has_no_difference() -> None:
    result = arm_result(Arm("new", 2, 1), ArmSample(), ArmSample(inferences=5), "latency_ms")
    assert (result.n, result.difference, result.ci_low) == (0, None, None)


def test_devices_are_split_across_the_arms_by_weight(world: World) -> None:
    world.delivery.experiments.start(world.app_id, "digits", ARMS, metric="error_rate", now=T0)
    versions = [_version_of(world, f"device-{i:04d}") for i in range(400)]
    share_new = versions.count(2) / len(versions)
    assert set(versions) == {1, 2}
    assert 0.18 < share_new < 0.32  # weight 1 of 4
    assert versions == [_version_of(world, f"device-{i:04d}") for i in range(400)]


def test_a_clearly_better_arm_is_the_winner_and_stop_promotes_it(world: World) -> None:
    service = world.delivery.experiments
    experiment = service.start(world.app_id, "digits", ARMS, metric="error_rate", now=T0)
    ts = T0.timestamp() + 60
    add_events(world, 1, ts=ts, latencies=[20.0] * 900, errors=100)
    add_events(world, 2, ts=ts, latencies=[20.0] * 980, errors=20)

    results = service.results(world.app_id, experiment.id, now=T0 + timedelta(days=1))

    control, new = results.arms
    assert (control.n, new.n) == (1000, 1000)
    assert new.ci_high is not None and new.ci_high < 0
    assert results.winner() == 2
    stopped = service.stop(world.app_id, experiment.id, promote="winner", reason="b wins")
    assert stopped.experiment.state == "stopped" and stopped.experiment.winner == 2
    assert world.registry.get_model(world.app_id, "digits").production_version == 2
    entry = world.rollouts.audit(world.app_id, subject=experiment.id, limit=1)[0]
    assert (entry.action, entry.reason, entry.details["promoted"]) == (
        "experiment.stop",
        "b wins",
        2,
    )


def test_no_significant_difference_means_no_winner_and_nothing_promoted(world: World) -> None:
    service = world.delivery.experiments
    experiment = service.start(world.app_id, "digits", ARMS, metric="error_rate", now=T0)
    add_events(world, 1, ts=T0.timestamp() + 1, latencies=[20.0] * 95, errors=5)
    add_events(world, 2, ts=T0.timestamp() + 1, latencies=[20.0] * 94, errors=6)

    stopped = service.stop(world.app_id, experiment.id, promote="winner")

    assert stopped.experiment.winner is None
    assert world.registry.get_model(world.app_id, "digits").production_version == 1
    assert _version_of(world, "device-0001") == 1


def test_an_experiment_and_a_rollout_exclude_each_other(world: World) -> None:
    experiment = world.delivery.experiments.start(world.app_id, "digits", ARMS)
    with pytest.raises(Conflict, match="running experiment"):
        world.rollouts.create(world.app_id, "digits", 2)
    with pytest.raises(Conflict, match="already has a running experiment"):
        world.delivery.experiments.start(world.app_id, "digits", ARMS)
    world.delivery.experiments.stop(world.app_id, experiment.id)
    world.rollouts.create(world.app_id, "digits", 2)
    with pytest.raises(Conflict, match="active rollout"):
        world.delivery.experiments.start(world.app_id, "digits", ARMS)


def test_a_stopped_experiment_cannot_be_stopped_again(world: World) -> None:
    experiment = world.delivery.experiments.start(world.app_id, "digits", ARMS)
    world.delivery.experiments.stop(world.app_id, experiment.id)
    with pytest.raises(Conflict, match="it is stopped"):
        world.delivery.experiments.stop(world.app_id, experiment.id)


@pytest.mark.parametrize(
    ("arms", "metric", "fragment"),
    [
        (ARMS[:1], "accuracy", "2 to 10 arms"),
        ([ARMS[0], {**ARMS[1], "version": 1}], "accuracy", "distinct"),
        ([ARMS[0], {**ARMS[1], "weight": 0}], "accuracy", "weight > 0"),
        (ARMS, "p99", "metric must be one of"),
    ],
)
def test_invalid_experiments_are_refused(
    world: World, arms: list[dict], metric: str, fragment: str
) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        world.delivery.experiments.start(world.app_id, "digits", arms, metric=metric)


def test_promoting_a_version_outside_the_arms_is_refused(world: World) -> None:
    experiment = world.delivery.experiments.start(world.app_id, "digits", ARMS)
    with pytest.raises(InvalidInput, match="version of an arm"):
        world.delivery.experiments.stop(world.app_id, experiment.id, promote=7)
