"""A move that fails half-way commits nothing (SQLite and PostgreSQL).

A crash (or any error) after ``complete`` promoted the candidate but before its state and
audit row were written used to leave a running rollout whose candidate was production.
Here the audit write fails inside the transaction: nothing of the move may remain.
"""

from __future__ import annotations

from typing import Any

import pytest
from rollout_kit import World

from pocketml.errors import Unavailable


def _fail(*_: Any) -> None:
    raise Unavailable("the database went away mid-transaction")


@pytest.mark.parametrize("action", ["complete", "rollback", "advance"])
def test_a_move_failing_before_its_audit_row_commits_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    rollout = world.rollouts.create(world.app_id, "digits", 2, schedule=[10, 100])
    monkeypatch.setattr(world.rollouts.store, "insert_audit", _fail)

    with pytest.raises(Unavailable):
        world.rollouts.transition(world.app_id, rollout.id, action)

    after = world.rollouts.get(world.app_id, rollout.id)
    assert (after.state, after.step, after.percent) == ("running", 0, 10.0)
    assert world.registry.get_model(world.app_id, "digits").production_version == 1
    assert [e.action for e in world.rollouts.audit(world.app_id, subject=rollout.id)] == ["create"]


def test_a_model_deletion_failing_before_its_audit_row_deletes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout = world.rollouts.create(world.app_id, "digits", 2)
    monkeypatch.setattr(world.rollouts.store, "insert_audit", _fail)

    with pytest.raises(Unavailable):
        world.delivery.models.delete(world.app_id, "digits", force=True)

    assert world.registry.get_model(world.app_id, "digits").latest_version == 2
    assert world.rollouts.get(world.app_id, rollout.id).state == "running"
