"""Update validation returns the first typed reason; FedBuff weighs staleness."""

from __future__ import annotations

import numpy as np
import pytest

from pocketml.federated import FedBuff, UpdateRejectReason, validate_update

_OK = {
    "task_id": "t1",
    "round_id": "r4",
    "client_id": "dev-a",
    "expected_task_id": "t1",
    "expected_round_id": "r4",
    "selected": {"dev-a", "dev-b"},
    "expected_shape": (3,),
    "max_norm": 2.0,
}


def test_a_good_update_passes_validation() -> None:
    assert validate_update(np.array([1.0, 0.0, 1.0]), **_OK) is None


@pytest.mark.parametrize(
    ("update", "change", "reason", "field"),
    [
        ([1.0, 0.0, 0.0], {"task_id": "t2"}, UpdateRejectReason.WRONG_TASK, "task_id"),
        ([1.0, 0.0, 0.0], {"round_id": "r3"}, UpdateRejectReason.WRONG_ROUND, "round_id"),
        ([1.0, 0.0, 0.0], {"client_id": "dev-z"}, UpdateRejectReason.NOT_SELECTED, "client_id"),
        ([1.0, 0.0], {}, UpdateRejectReason.WRONG_SHAPE, "update"),
        ([1.0, np.nan, 0.0], {}, UpdateRejectReason.NOT_FINITE, "update"),
        ([1.0, np.inf, 0.0], {}, UpdateRejectReason.NOT_FINITE, "update"),
        ([100.0, 0.0, 0.0], {}, UpdateRejectReason.NORM_TOO_LARGE, "update"),
    ],
)
def test_a_bad_update_is_rejected_with_its_reason_and_field(
    update: list[float],
    change: dict,
    reason: UpdateRejectReason,
    field: str,  # type: ignore[type-arg]
) -> None:
    rejection = validate_update(np.array(update), **{**_OK, **change})

    assert rejection is not None
    assert rejection.reason is reason
    assert rejection.field == field


def test_fedbuff_applies_the_staleness_weighted_mean_when_the_buffer_is_full() -> None:
    buff = FedBuff(np.zeros(2), buffer_size=2, staleness_exponent=0.5)
    first = buff.submit(np.array([1.0, 0.0]), client_version=0)
    buff.version = 3  # three server steps happened meanwhile (as if other clients reported)

    second = buff.submit(np.array([0.0, 1.0]), client_version=0)

    assert first.model is None and first.weight == 1.0
    assert second.staleness == 3 and second.weight == pytest.approx(0.5)
    np.testing.assert_allclose(second.model, [0.5, 0.25])
    assert second.version == 4 and buff.buffered == 0


def test_fedbuff_refuses_updates_staler_than_the_limit_or_from_the_future() -> None:
    buff = FedBuff(np.zeros(2), buffer_size=4, max_staleness=2)
    buff.version = 5

    assert not buff.submit(np.ones(2), client_version=2).accepted
    assert not buff.submit(np.ones(2), client_version=6).accepted
    assert buff.submit(np.ones(2), client_version=3).accepted
    assert buff.buffered == 1
