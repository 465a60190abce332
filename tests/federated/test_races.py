"""Races between a device's request and the round advancing, made deterministic: the
racing request is run (on a second replica's service) at the exact point where the
advancing replica has read the round but not yet written its decision."""

from __future__ import annotations

from typing import Any

from federated.fl_kit import ServiceTransport
from federated.test_service import World, _spec


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

    a._set_phase = racing_flip  # type: ignore[method-assign]
    world.clock.now += 61  # the phase deadline passes; a's background pass flips it
    a.tick()
    a._set_phase = flip  # type: ignore[method-assign]

    state = ta.secagg_state(task.id, 1, devices[0].device_id)
    assert state["phase"] == "unmask"
    assert state["survivors"] == [1, 2, 3, 4] and state["dropped"] == []
    for d in devices:
        d.unmask(ta, task.id, 1)
    info = a.get_task(world.app_id, task.id)
    assert info.rounds[0].state == "aggregated", info.log
    assert info.rounds[0].outcome is not None and info.rounds[0].outcome["reports"] == 4
