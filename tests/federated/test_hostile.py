"""Hostile or overstated device input the service must not take at face value."""

from __future__ import annotations

import numpy as np
import pytest

from federated.fl_kit import ServiceTransport
from federated.test_service import World, _spec
from pocketml.federated import fedavg


def _weights(world: World, task_id: str) -> np.ndarray:
    with world.registry.store.engine.connect() as conn:
        raw = conn.exec_driver_sql(
            f"SELECT weights FROM federated_tasks WHERE id = '{task_id}'"
        ).scalar_one()
    return np.frombuffer(bytes(raw), dtype="<f4").astype(np.float64)


def test_an_upload_overstating_its_samples_weighs_no_more_than_its_join_said(
    world: World,
) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    task = service.create_task(
        world.app_id, "digits", _spec(rounds=2, clients_per_round=2), actor="t"
    )
    before = _weights(world, task.id)
    honest, attacker = world.devices(2)
    for d in (honest, attacker):
        d.join(t, task.id, 1)
        d.fetch(t, task.id, 1)
        d.train()
    honest.upload(t, task.id, 1)
    service.upload(
        world.app_id,
        task.id,
        1,
        device_id=attacker.device_id,
        num_samples=10**9,  # the join said len(attacker.y)
        idempotency_key="attacker-up-1",
        body=np.asarray(attacker.clipped).astype("<f4").tobytes(),
    )
    assert service.get_task(world.app_id, task.id).rounds[0].state == "aggregated"
    assert honest.clipped is not None and attacker.clipped is not None
    expected = fedavg([honest.clipped, attacker.clipped], [len(honest.y), len(attacker.y)])
    step = _weights(world, task.id) - before
    assert np.allclose(step, expected, atol=1e-5)


def _adaptive_round(world: World, clipped: bool | None) -> float:
    """One DP round with adaptive clipping whose three devices all say ``clipped``;
    returns the next round's clip norm."""
    service = world.service()
    spec = _spec(
        rounds=1,
        clients_per_round=3,
        noise_multiplier=1.0,
        population=3,
        adaptive_clipping=True,
        seed=11,
        clip_norm=0.01,  # every update is far above it: every device clips
    )
    task = service.create_task(world.app_id, "digits", spec, actor="t")
    t = ServiceTransport(service, world.app_id)
    for i, d in enumerate(world.devices(3, prefix=f"dev-{clipped}")):
        d.join(t, task.id, 1)
        d.fetch(t, task.id, 1)
        d.train()
        service.upload(
            world.app_id,
            task.id,
            1,
            device_id=d.device_id,
            num_samples=len(d.y),
            idempotency_key=f"up-{i}-{clipped}",
            # just inside C, so float32 rounding cannot make the server see it clipped
            body=(np.asarray(d.clipped) * 0.999).astype("<f4").tobytes(),
            clipped=clipped,
        )
    world.clock.now += 601  # the cohort may grow past 3 with DP: the deadline closes it
    service.tick()
    done = service.get_task(world.app_id, task.id)
    assert done.rounds[0].state == "aggregated", done.log
    outcome = done.rounds[0].outcome
    assert outcome is not None
    assert outcome["clipped"] == (3 if clipped else 0)
    return float(outcome["next_clip_norm"])


def test_adaptive_clipping_counts_the_devices_clipped_bit_not_the_clipped_bytes(
    world: World,
) -> None:
    unsaid = _adaptive_round(world, None)  # the server sees norms <= C: "none clipped"
    said = _adaptive_round(world, True)  # same noise (seed 11, round 1)
    # b = (unclipped + noise) / 3: three fewer unclipped raise C by exp(0.2 * 3 / 3)
    assert said / unsaid == pytest.approx(np.exp(0.2))


def test_a_secagg_round_never_unmasks_a_sum_of_two_inputs(world: World) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(rounds=1, clients_per_round=3, min_reports=2, secagg=True, max_retries=0)
    task = service.create_task(world.app_id, "digits", spec, actor="t")
    devices = world.devices(3)
    for d in devices:
        d.join(t, task.id, 1)
    for d in devices:
        d.fetch(t, task.id, 1)
        d.train()
        d.advertise(t, task.id, 1)
    for d in devices:
        d.share(t, task.id, 1)
    for d in devices[:2]:  # the third drops: threshold 2 and min_reports 2 would allow it
        d.masked_upload(t, task.id, 1)
    world.clock.now += 61
    service.tick()
    first = service.get_task(world.app_id, task.id).rounds[0]
    assert first.state == "failed" and first.outcome is not None
    assert "needs at least 3" in first.outcome["reason"]


def test_an_operator_cap_bounds_the_weight_of_a_device_claiming_many_samples(
    world: World,
) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(rounds=2, clients_per_round=2, max_sample_weight=50)
    task = service.create_task(world.app_id, "digits", spec, actor="t")
    before = _weights(world, task.id)
    honest, liar = world.devices(2)
    honest.join(t, task.id, 1)
    liar.join(t, task.id, 1, num_samples=10**9)  # the join's claim is believed, then capped
    for d in (honest, liar):
        d.fetch(t, task.id, 1)
        d.train()
    honest.upload(t, task.id, 1)
    assert liar.clipped is not None and honest.clipped is not None
    t.upload(task.id, 1, liar.device_id, liar.clipped.astype("<f4").tobytes(), "liar-1", 10**9)
    assert service.get_task(world.app_id, task.id).rounds[0].state == "aggregated"
    expected = fedavg([honest.clipped, liar.clipped], [min(50, len(honest.y)), 50])
    assert np.allclose(_weights(world, task.id) - before, expected, atol=1e-5)
