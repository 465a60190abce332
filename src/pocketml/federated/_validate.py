"""Validation of an incoming update, as a typed reason the route turns into a 4xx.

Checked in the order a client can fix them: the task and round it names, whether it was
selected, then the update itself (shape, finite values, norm). The first failure is the
answer; an update that fails is never aggregated.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

__all__ = ["UpdateRejectReason", "UpdateRejection", "validate_update"]


class UpdateRejectReason(enum.Enum):
    """Why an update was refused (the value is a stable code for logs and responses)."""

    WRONG_TASK = "wrong_task"
    WRONG_ROUND = "wrong_round"
    NOT_SELECTED = "not_selected"
    WRONG_SHAPE = "wrong_shape"
    NOT_FINITE = "not_finite"
    NORM_TOO_LARGE = "norm_too_large"


_FIELD = {
    UpdateRejectReason.WRONG_TASK: "task_id",
    UpdateRejectReason.WRONG_ROUND: "round_id",
    UpdateRejectReason.NOT_SELECTED: "client_id",
}


@dataclass(frozen=True)
class UpdateRejection:
    """A refused update: the reason, the field at fault and a message for the client."""

    reason: UpdateRejectReason
    message: str

    @property
    def field(self) -> str:
        """The request field the rejection is about."""
        return _FIELD.get(self.reason, "update")


def validate_update(
    update: np.ndarray,
    *,
    task_id: str,
    round_id: str,
    client_id: str,
    expected_task_id: str,
    expected_round_id: str,
    selected: Collection[str],
    expected_shape: tuple[int, ...],
    max_norm: float,
) -> UpdateRejection | None:
    """Return why ``update`` must be refused, or None when it may be aggregated.

    ``max_norm`` is the absurd-norm guard (for a clipped task, the clip norm with a little
    slack; a masked upload is checked by the SecAgg server instead).
    """
    reject = UpdateRejectReason
    if task_id != expected_task_id:
        return UpdateRejection(
            reject.WRONG_TASK, f"task_id {task_id!r} is not this task ({expected_task_id!r})"
        )
    if round_id != expected_round_id:
        return UpdateRejection(
            reject.WRONG_ROUND,
            f"round_id {round_id!r} is not the open round ({expected_round_id!r})",
        )
    if client_id not in selected:
        return UpdateRejection(
            reject.NOT_SELECTED, f"client_id {client_id!r} was not selected for this round"
        )
    array = np.asarray(update)
    if array.shape != tuple(expected_shape):
        return UpdateRejection(
            reject.WRONG_SHAPE, f"update must have shape {tuple(expected_shape)}; got {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        return UpdateRejection(reject.NOT_FINITE, "update must hold finite numbers (no NaN or Inf)")
    norm = float(np.linalg.norm(array.astype(np.float64).ravel()))
    if norm > max_norm:
        return UpdateRejection(
            reject.NORM_TOO_LARGE, f"update's L2 norm must be <= {max_norm:g}; got {norm:.4g}"
        )
    return None
