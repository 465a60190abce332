"""Hostile or overstated device input the service must not take at face value."""

from __future__ import annotations

import numpy as np

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
