"""The values the federated service hands out (rows never leave the service)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "ROUND_STATES",
    "TASK_STATES",
    "Announcement",
    "JoinAnswer",
    "RoundInfo",
    "SecAggState",
    "SignedDocument",
    "TaskInfo",
    "UploadAnswer",
]

TASK_STATES = ("running", "finishing", "succeeded", "failed", "cancelled")
"""``running`` (rounds go on), ``finishing`` (the last round aggregated, the result is
being pushed), then ``succeeded``, ``failed`` or ``cancelled``."""
ROUND_STATES = ("open", "aggregated", "no_model", "failed", "cancelled")
"""``open``; ``aggregated`` (the global head moved); ``no_model`` (fewer than min_reports);
``failed`` (SecAgg fell below its threshold: no aggregate); ``cancelled``."""


@dataclass(frozen=True)
class RoundInfo:
    """One round as an operator sees it."""

    number: int
    state: str
    phase: str
    opened_at: float
    join_until: float
    deadline: float
    selected: int
    reports: int
    clip_norm: float
    outcome: dict[str, Any] | None
    closed_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class TaskInfo:
    """One federated task with its rounds (newest last)."""

    id: str
    app_id: str
    model: str
    base_version: int
    state: str
    spec: dict[str, Any]
    round: int
    rounds_done: int
    retries_used: int
    clients_total: int
    clip_norm: float
    epsilon: float | None
    delta: float | None
    result_version: int | None
    rollout_id: str | None
    error: str | None
    log: list[str]
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    rounds: tuple[RoundInfo, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps ISO 8601)."""
        data = asdict(self)
        for key in ("created_at", "updated_at", "finished_at"):
            value = getattr(self, key)
            data[key] = value.isoformat() if value is not None else None
        return data


@dataclass(frozen=True)
class Announcement:
    """An open task as the check-in announces it (``FEDERATED_ANNOUNCEMENT_FIELDS``)."""

    task_id: str
    model: str
    base_version: int
    round: int
    requires: dict[str, Any]
    join_until: float
    targeting: tuple[dict[str, Any], ...]
    kind: str = "head"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``federated[]`` entry."""
        return {
            "task_id": self.task_id,
            "model": self.model,
            "base_version": self.base_version,
            "round": self.round,
            "kind": self.kind,
            "requires": dict(self.requires),
            "join_url": f"/v1/federated/tasks/{self.task_id}/join",
            "join_until": self.join_until,
        }


@dataclass(frozen=True)
class JoinAnswer:
    """A selected device's place in a round."""

    task_id: str
    round: int
    client_id: int
    secagg: bool
    deadline: float

    def to_dict(self) -> dict[str, Any]:
        """The join route's JSON."""
        return {
            "task_id": self.task_id,
            "round": self.round,
            "selected": True,
            "client_id": self.client_id,
            "secagg": self.secagg,
            "round_url": f"/v1/federated/tasks/{self.task_id}/rounds/{self.round}",
            "deadline": self.deadline,
        }


@dataclass(frozen=True)
class SignedDocument:
    """A round document: the exact body bytes and their Ed25519 signature."""

    body: bytes
    key_id: str
    signature: bytes


@dataclass(frozen=True)
class UploadAnswer:
    """What happened to an upload or a SecAgg message."""

    accepted: bool
    duplicate: bool
    round: int
    received: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class SecAggState:
    """The SecAgg state of a round as one device sees it (the polled route)."""

    phase: str
    deadline: float
    poll_after_s: float
    config: dict[str, Any] | None
    roster: dict[str, dict[str, str]] | None
    inbox: dict[str, str] | None
    survivors: list[int] | None
    dropped: list[int] | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)
