"""Races between a device's request and the round advancing, made deterministic: the
racing request is run (on a second replica's service) at the exact point where the
advancing replica has read the round but not yet written its decision."""

from __future__ import annotations

from typing import Any

import pytest

from federated.fl_kit import ServiceTransport
from federated.test_service import World, _spec
from pocketml.federated import service as service_module
from pocketml.protocol import FlAlreadyReported


def test_a_masked_input_landing_while_the_phase_flips_to_unmask_is_a_survivor(
    world: World,
) -> None:
    a = world.service()
    b = world.service()
    b.owner = "replica-b"  # another replica serving the late device's request
    ta, tb = ServiceTransport(a, world.app_id), ServiceTransport(b, world.app_id)
    spec = _spec(rounds=1, clients_per_round=4, min_reports=2, secagg=True)
    task = a.create_task(world.app_id, "digits", spec, actor="t")
    devices = world.devices(4)
    for d in devices:
        d.join(ta, task.id, 1)
    for d in devices:
        d.fetch(ta, task.id, 1)
        d.train()
        d.advertise(ta, task.id, 1)
    for d in devices:
        d.share(ta, task.id, 1)
    for d in devices[:3]:
        d.masked_upload(ta, task.id, 1)
    late = devices[3]
    assert tb.secagg_state(task.id, 1, late.device_id)["phase"] == "masked_input"
    flip = a._set_phase

    def racing_flip(*args: Any, **kwargs: Any) -> bool:
        if args[2] == "unmask":  # a has read the round; b stores the late input now
            late.masked_upload(tb, task.id, 1)
        return flip(*args, **kwargs)

    a._set_phase = racing_flip
    world.clock.now += 61  # the phase deadline passes; a's background pass flips it
    a.tick()
    a._set_phase = flip

    state = ta.secagg_state(task.id, 1, devices[0].device_id)
    assert state["phase"] == "unmask"
    assert state["survivors"] == [1, 2, 3, 4] and state["dropped"] == []
    for d in devices:
        d.unmask(ta, task.id, 1)
    info = a.get_task(world.app_id, task.id)
    assert info.rounds[0].state == "aggregated", info.log
    assert info.rounds[0].outcome is not None and info.rounds[0].outcome["reports"] == 4


def _buffered(world: World, task_id: str) -> list[tuple[str, int, bool]]:
    with world.registry.store.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT device_id, round, payload IS NOT NULL FROM federated_participants "
            f"WHERE task_id = '{task_id}' ORDER BY device_id"
        ).all()
    return [(str(r[0]), int(r[1]), bool(r[2])) for r in rows]


def test_an_update_accepted_while_a_fedbuff_step_is_computed_is_aggregated(
    world: World,
) -> None:
    a = world.service()
    b = world.service()
    b.owner = "replica-b"
    ta, tb = ServiceTransport(a, world.app_id), ServiceTransport(b, world.app_id)
    spec = _spec(rounds=3, clients_per_round=3, min_reports=2, fedbuff=True, fedbuff_buffer=2)
    task = a.create_task(world.app_id, "digits", spec, actor="t")
    devices = world.devices(3)
    for d in devices:
        d.join(ta, task.id, 1)
        d.fetch(ta, task.id, 1)
        d.train()
    devices[0].upload(ta, task.id, 1)
    apply = a._apply
    late: list[Any] = []

    def racing_apply(*args: Any, **kwargs: Any) -> bool:
        if not late:  # a read the buffer (2 updates); b accepts a third one now
            late.append(devices[2].upload(tb, task.id, 1))
        return apply(*args, **kwargs)

    a._apply = racing_apply
    devices[1].upload(ta, task.id, 1)  # fills the buffer: a steps
    a._apply = apply

    assert late[0]["accepted"] is True and late[0]["duplicate"] is False
    info = a.get_task(world.app_id, task.id)
    first = info.rounds[0]
    assert first.state == "aggregated" and first.outcome is not None
    assert first.outcome["reports"] == 3  # the late update is in the step, not deleted
    assert [kept for _, _, kept in _buffered(world, task.id)] == [False, False, False]


def test_a_plain_update_accepted_while_the_round_is_aggregated_is_in_the_aggregate(
    world: World,
) -> None:
    a = world.service()
    b = world.service()
    b.owner = "replica-b"
    ta, tb = ServiceTransport(a, world.app_id), ServiceTransport(b, world.app_id)
    task = a.create_task(world.app_id, "digits", _spec(rounds=1), actor="t")
    devices = world.devices(3)
    for d in devices[:2]:
        d.participate(ta, task.id, 1)
    devices[2].join(ta, task.id, 1)
    devices[2].fetch(ta, task.id, 1)
    devices[2].train()
    aggregate = a._aggregate_plain
    late: list[Any] = []

    def racing_aggregate(*args: Any, **kwargs: Any) -> bool:
        if not late:  # a read 2 reports at the deadline; b accepts the third one now
            late.append(devices[2].upload(tb, task.id, 1))
        return aggregate(*args, **kwargs)

    a._aggregate_plain = racing_aggregate
    world.clock.now += 599  # before the deadline for b's check, after it for a's pass
    a.tick(now=world.clock.now + 2)
    a._aggregate_plain = aggregate

    assert late[0]["accepted"] is True
    first = a.get_task(world.app_id, task.id).rounds[0]
    assert first.state == "aggregated" and first.outcome is not None
    assert first.outcome["reports"] == 3


def test_a_buffered_update_of_an_older_round_is_deleted_when_the_task_is_cancelled(
    world: World,
) -> None:
    service = world.service()
    t = ServiceTransport(service, world.app_id)
    spec = _spec(rounds=3, clients_per_round=3, min_reports=2, fedbuff=True, fedbuff_buffer=2)
    task = service.create_task(world.app_id, "digits", spec, actor="t")
    devices = world.devices(3)
    for d in devices:
        d.join(t, task.id, 1)
        d.fetch(t, task.id, 1)
        d.train()
    devices[0].upload(t, task.id, 1)
    devices[1].upload(t, task.id, 1)  # the buffer is full: round 2 opens
    devices[2].upload(t, task.id, 1)  # a slow phone: buffered for round 2's step
    assert ("device-0002", 1, True) in _buffered(world, task.id)
    service.cancel_task(world.app_id, task.id, actor="t")
    assert [kept for _, _, kept in _buffered(world, task.id)] == [False, False, False]


@pytest.mark.parametrize("registry", ["postgresql"], indirect=True)  # SQLite: one writer
def test_two_concurrent_uploads_of_one_device_count_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = world.service()
    b = world.service()
    b.owner = "replica-b"
    ta, tb = ServiceTransport(a, world.app_id), ServiceTransport(b, world.app_id)
    task = a.create_task(world.app_id, "digits", _spec(rounds=1), actor="t")
    device = world.devices(1)[0]
    device.join(ta, task.id, 1)
    device.fetch(ta, task.id, 1)
    device.train()
    lock_round = service_module._lock_upload_round
    second: list[Any] = []
    racing = [True]

    def racing_lock(*args: Any) -> Any:
        if racing:  # a read "not reported yet"; b's upload (another key) commits now
            racing.clear()
            second.append(device.upload(tb, task.id, 1, key="second-key-0001"))
        return lock_round(*args)

    monkeypatch.setattr(service_module, "_lock_upload_round", racing_lock)
    with pytest.raises(FlAlreadyReported):
        device.upload(ta, task.id, 1, key="first-key-0001")
    assert second[0]["accepted"] is True
    assert a.get_task(world.app_id, task.id).rounds[0].reports == 1
