"""RolloutStore: rollouts, channel targeting, the audit log and the evaluator lease.

Every state change is a conditional ``UPDATE ... WHERE state = :expected AND step =
:expected`` with its audit row in the same transaction, so two writers (two replicas'
evaluators, an admin and an evaluator) can never both apply a transition: the loser
sees ``rowcount == 0``. The lease is one row per name taken with
``UPDATE ... WHERE expires_at < now OR owner = me`` (an INSERT the first time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from pocketml.delivery._rollout_orm import (
    ChannelTargetingRow,
    EvaluatorLeaseRow,
    RolloutAuditRow,
    RolloutRow,
)
from pocketml.errors import Conflict, NotFound
from pocketml.registry._db import WRITE, translate_errors
from pocketml.registry._orm import utcnow

__all__ = ["AuditEntry", "Rollout", "RolloutStore"]

_ROLLOUTS: sa.Table = RolloutRow.__table__  # type: ignore[assignment]
_TARGETING: sa.Table = ChannelTargetingRow.__table__  # type: ignore[assignment]
_AUDIT: sa.Table = RolloutAuditRow.__table__  # type: ignore[assignment]
_LEASES: sa.Table = EvaluatorLeaseRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Rollout:
    """A staged rollout as stored (see ``rollouts.py`` for the state machine)."""

    id: str
    app_id: str
    model_id: str
    model: str
    channel: str
    candidate_version: int
    control_version: int | None
    state: str
    schedule: tuple[float, ...]
    step: int
    percent: float
    min_dwell_s: float
    min_samples: int
    on_breach: str
    guardrails: dict[str, Any]
    targeting: list[Any]
    salt: str
    step_started_at: datetime
    last_evaluation: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AuditEntry:
    """One audit row: a transition of a rollout (who or what, when, why)."""

    id: int
    subject: str
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    reason: str
    details: dict[str, Any]
    at: datetime


def _rollout(row: Any) -> Rollout:
    data = dict(row._mapping)
    data.pop("active_key", None)
    data["schedule"] = tuple(float(p) for p in data["schedule"])
    return Rollout(**data)


class RolloutStore:
    """Reads and writes the rollout tables; returns frozen dataclasses, never rows.

    Args:
        engine: the registry's open engine.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _write(self) -> sa.Connection:
        return self.engine.connect().execution_options(**WRITE)

    # -- targeting -----------------------------------------------------------------------

    def targeting_of_app(self, app_id: str, channel: str) -> dict[str, list[Any]]:
        """model_id -> rules of every model of the app with targeting on ``channel``."""
        query = sa.select(_TARGETING.c.model_id, _TARGETING.c.rules).where(
            _TARGETING.c.app_id == app_id, _TARGETING.c.channel == channel
        )
        with translate_errors("read targeting"), self.engine.connect() as conn:
            return {row[0]: list(row[1] or []) for row in conn.execute(query)}

    def set_targeting(self, app_id: str, model_id: str, channel: str, rules: list[Any]) -> None:
        """Replace the targeting rules of one model's channel (empty list: everyone)."""
        where = (_TARGETING.c.model_id == model_id, _TARGETING.c.channel == channel)
        values = {"rules": rules, "updated_at": utcnow()}
        with translate_errors("store targeting"), self._write() as conn, conn.begin():
            if conn.execute(sa.update(_TARGETING).where(*where).values(**values)).rowcount == 0:
                conn.execute(
                    sa.insert(_TARGETING).values(
                        model_id=model_id, channel=channel, app_id=app_id, **values
                    )
                )

    # -- rollouts ------------------------------------------------------------------------

    def insert(self, values: dict[str, Any], audit: dict[str, Any]) -> Rollout:
        """Insert a rollout and its creation audit row.

        Raises:
            Conflict: another rollout is active on the same model and channel.
        """
        active_key = f"{values['model_id']}:{values['channel']}"
        with translate_errors("create the rollout"):
            try:
                with self._write() as conn, conn.begin():
                    conn.execute(sa.insert(_ROLLOUTS).values(active_key=active_key, **values))
                    conn.execute(sa.insert(_AUDIT).values(**audit))
            except exc.IntegrityError as error:
                if "active_key" not in str(error.orig):
                    raise
                raise Conflict(
                    f"model {values['model']!r} already has an active rollout on channel "
                    f"{values['channel']!r}; complete or roll it back first "
                    "(pocketml rollout status)."
                ) from error
        return self.get(values["app_id"], values["id"])

    def get(self, app_id: str, rollout_id: str) -> Rollout:
        """One rollout of the app. Raises NotFound."""
        query = sa.select(_ROLLOUTS).where(
            _ROLLOUTS.c.app_id == app_id, _ROLLOUTS.c.id == rollout_id
        )
        with translate_errors("read the rollout"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(
                f"no rollout {rollout_id!r} in this app; list them with pocketml rollout status."
            )
        return _rollout(row)

    def list_rollouts(
        self, app_id: str | None, *, states: tuple[str, ...] | None = None
    ) -> list[Rollout]:
        """Rollouts of one app (or of every app when ``app_id`` is None), newest first."""
        query = sa.select(_ROLLOUTS).order_by(_ROLLOUTS.c.created_at.desc(), _ROLLOUTS.c.id)
        if app_id is not None:
            query = query.where(_ROLLOUTS.c.app_id == app_id)
        if states is not None:
            query = query.where(_ROLLOUTS.c.state.in_(states))
        with translate_errors("list rollouts"), self.engine.connect() as conn:
            return [_rollout(row) for row in conn.execute(query)]

    def transition(
        self, current: Rollout, values: dict[str, Any], audit: dict[str, Any] | None
    ) -> bool:
        """Apply ``values`` only if the rollout is still in ``current``'s state and step.

        Returns:
            True when this call changed the row (and wrote its audit row), False when
            another writer changed it first.
        """
        values = {**values, "updated_at": utcnow()}
        if values.get("state") in ("completed", "rolled_back"):
            values["active_key"] = None
        query = (
            sa.update(_ROLLOUTS)
            .where(
                _ROLLOUTS.c.id == current.id,
                _ROLLOUTS.c.state == current.state,
                _ROLLOUTS.c.step == current.step,
            )
            .values(**values)
        )
        with translate_errors("update the rollout"), self._write() as conn, conn.begin():
            if conn.execute(query).rowcount != 1:
                return False
            if audit is not None:
                conn.execute(sa.insert(_AUDIT).values(**audit))
        return True

    # -- audit ---------------------------------------------------------------------------

    def audit(self, app_id: str, *, subject: str | None, limit: int) -> list[AuditEntry]:
        """Newest audit entries of the app (of one rollout when ``subject`` is given)."""
        query = (
            sa.select(
                _AUDIT.c.id,
                _AUDIT.c.subject,
                _AUDIT.c.action,
                _AUDIT.c.from_state,
                _AUDIT.c.to_state,
                _AUDIT.c.actor,
                _AUDIT.c.reason,
                _AUDIT.c.details,
                _AUDIT.c.at,
            )
            .where(_AUDIT.c.app_id == app_id)
            .order_by(_AUDIT.c.id.desc())
            .limit(limit)
        )
        if subject is not None:
            query = query.where(_AUDIT.c.subject == subject)
        with translate_errors("read the audit log"), self.engine.connect() as conn:
            return [AuditEntry(*row) for row in conn.execute(query)]

    # -- lease ---------------------------------------------------------------------------

    def acquire_lease(self, name: str, owner: str, now: float, ttl_s: float) -> bool:
        """Take or renew the lease ``name`` for ``owner`` until ``now + ttl_s``.

        Returns:
            True when ``owner`` holds the lease afterwards; False when another owner's
            lease has not expired.
        """
        update = (
            sa.update(_LEASES)
            .where(
                _LEASES.c.name == name,
                sa.or_(_LEASES.c.expires_at < now, _LEASES.c.owner == owner),
            )
            .values(owner=owner, expires_at=now + ttl_s)
        )
        with translate_errors("take the evaluator lease"):
            with self._write() as conn, conn.begin():
                if conn.execute(update).rowcount == 1:
                    return True
            try:
                with self._write() as conn, conn.begin():
                    conn.execute(
                        sa.insert(_LEASES).values(name=name, owner=owner, expires_at=now + ttl_s)
                    )
                return True
            except exc.IntegrityError:  # the row exists and is held by someone else
                return False

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up early (only when ``owner`` holds it)."""
        query = (
            sa.update(_LEASES)
            .where(_LEASES.c.name == name, _LEASES.c.owner == owner)
            .values(expires_at=0.0)
        )
        with (
            translate_errors("release the evaluator lease"),
            self._write() as conn,
            conn.begin(),
        ):
            conn.execute(query)
