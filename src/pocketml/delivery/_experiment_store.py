"""ExperimentStore: the ``experiments`` table (A/B tests), on the registry's engine.

Like rollouts, at most one running experiment per model and channel (unique
``active_key``, NULL once stopped). Returns frozen dataclasses, never rows. Writes run in
the caller's transaction (``RolloutStore.model_transaction``: the model row locked
first), so starting, stopping and the promotion of a stop commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from pocketml.db import translate_errors, utcnow
from pocketml.delivery._rollout_orm import ExperimentRow, RolloutAuditRow
from pocketml.delivery.targeting import bucket_of
from pocketml.errors import Conflict, NotFound

__all__ = ["Arm", "Experiment", "ExperimentStore"]

_TABLE: sa.Table = ExperimentRow.__table__  # type: ignore[assignment]
_AUDIT: sa.Table = RolloutAuditRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment: a name, the version it serves, its traffic weight."""

    name: str
    version: int
    weight: float


@dataclass(frozen=True)
class Experiment:
    """An A/B experiment as stored. The first arm is the control."""

    id: str
    app_id: str
    model_id: str
    model: str
    channel: str
    state: str
    arms: tuple[Arm, ...]
    metric: str
    salt: str
    winner: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    def arm_of(self, device_id: str) -> Arm:
        """The arm of a device: its bucket falls in the arm's share of [0, 10000)."""
        bucket = bucket_of(self.salt, device_id)
        total = sum(a.weight for a in self.arms)
        edge = 0.0
        for arm in self.arms:
            edge += arm.weight / total * 10_000
            if bucket < edge:
                return arm
        return self.arms[-1]


def _experiment(row: Any) -> Experiment:
    data = dict(row._mapping)
    data.pop("active_key", None)
    data["arms"] = tuple(
        Arm(a["name"], int(a["version"]), float(a["weight"])) for a in data["arms"]
    )
    return Experiment(**data)


class ExperimentStore:
    """Reads and writes ``experiments`` rows (and their audit rows)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def insert_in(self, conn: sa.Connection, values: dict[str, Any], audit: dict[str, Any]) -> None:
        """Insert a running experiment and its audit row in the caller's transaction.

        Raises:
            Conflict: an experiment runs on the model's channel already.
        """
        active_key = f"{values['model_id']}:{values['channel']}"
        try:
            conn.execute(sa.insert(_TABLE).values(active_key=active_key, **values))
        except exc.IntegrityError as error:
            if "active_key" not in str(error.orig):
                raise
            raise Conflict(
                f"model {values['model']!r} already has a running experiment on channel "
                f"{values['channel']!r}; stop it first (pocketml experiment stop)."
            ) from error
        conn.execute(sa.insert(_AUDIT).values(**audit))

    def running_in(
        self, conn: sa.Connection, model_id: str, channel: str | None = None
    ) -> list[str]:
        """Ids of the model's running experiments (on ``channel``), in the caller's transaction."""
        query = sa.select(_TABLE.c.id).where(
            _TABLE.c.model_id == model_id, _TABLE.c.state == "running"
        )
        if channel is not None:
            query = query.where(_TABLE.c.channel == channel)
        return [row[0] for row in conn.execute(query)]

    def delete_model_in(self, conn: sa.Connection, model_id: str) -> list[str]:
        """Delete the model's experiments (their audit rows stay); their ids."""
        ids = [
            r[0] for r in conn.execute(sa.select(_TABLE.c.id).where(_TABLE.c.model_id == model_id))
        ]
        conn.execute(sa.delete(_TABLE).where(_TABLE.c.model_id == model_id))
        return ids

    def get(self, app_id: str, experiment_id: str) -> Experiment:
        """One experiment of the app. Raises NotFound."""
        query = sa.select(_TABLE).where(_TABLE.c.app_id == app_id, _TABLE.c.id == experiment_id)
        with translate_errors("read the experiment"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"no experiment {experiment_id!r} in this app; list them with "
                "pocketml experiment status."
            )
        return _experiment(row)

    def list_experiments(self, app_id: str, *, running_only: bool = False) -> list[Experiment]:
        """The app's experiments, newest first."""
        query = (
            sa.select(_TABLE)
            .where(_TABLE.c.app_id == app_id)
            .order_by(_TABLE.c.created_at.desc(), _TABLE.c.id)
        )
        if running_only:
            query = query.where(_TABLE.c.state == "running")
        with translate_errors("list experiments"), self.engine.connect() as conn:
            return [_experiment(row) for row in conn.execute(query)]

    def stop_in(
        self, conn: sa.Connection, current: Experiment, winner: int | None, audit: dict[str, Any]
    ) -> bool:
        """Mark a running experiment stopped (with its winner) in the caller's transaction.

        Returns:
            False (and nothing written) when it was stopped already.
        """
        query = (
            sa.update(_TABLE)
            .where(_TABLE.c.id == current.id, _TABLE.c.state == "running")
            .values(state="stopped", active_key=None, winner=winner, updated_at=utcnow())
        )
        if conn.execute(query).rowcount != 1:
            return False
        conn.execute(sa.insert(_AUDIT).values(**audit))
        return True
