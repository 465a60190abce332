"""RolloutStore: rollouts, channel targeting, the audit log and the evaluator lease.

Every transition runs in ONE write transaction (``locked``) that first locks the model
row (``registry.store.lock_model_row``: ``SELECT ... FOR UPDATE`` on PostgreSQL, the
``BEGIN IMMEDIATE`` write lock on SQLite), then reads the rollout row under that lock;
the caller checks the state, writes any registry rows (the promotion of ``complete``)
on the same connection, and ``apply`` writes the new state and its audit row. So two
writers (two replicas' evaluators, an admin and an evaluator, a manual promotion) can
never both act on one state, and a crash commits all of a transition or none of it.
``apply`` is still a conditional ``UPDATE ... WHERE state AND step`` as a backstop.

The evaluator's lease is a ``pocketml.db.Lease`` on the ``evaluator_leases`` table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc

from pocketml.db import WRITE, Lease, translate_errors, utcnow
from pocketml.delivery._rollout_orm import (
    ChannelTargetingRow,
    EvaluatorLeaseRow,
    RolloutAuditRow,
    RolloutRow,
)
from pocketml.errors import Conflict, NotFound
from pocketml.registry.transactions import LockedModel, lock_model_row

__all__ = ["AuditEntry", "Rollout", "RolloutStore"]

_ROLLOUTS: sa.Table = RolloutRow.__table__  # type: ignore[assignment]
_TARGETING: sa.Table = ChannelTargetingRow.__table__  # type: ignore[assignment]
_AUDIT: sa.Table = RolloutAuditRow.__table__  # type: ignore[assignment]
_LEASES: sa.Table = EvaluatorLeaseRow.__table__  # type: ignore[assignment]
ACTIVE = ("running", "paused")


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

    @contextmanager
    def model_transaction(
        self, app_id: str, action: str, *, name: str | None = None, model_id: str | None = None
    ) -> Iterator[tuple[sa.Connection, LockedModel]]:
        """A write transaction holding the lock of one of the app's models (by name or id).

        Raises:
            NotFound: no such model.
        """
        with translate_errors(action), self._write() as conn, conn.begin():
            yield conn, lock_model_row(conn, app_id, name=name, model_id=model_id)

    @contextmanager
    def locked(
        self, app_id: str, rollout_id: str
    ) -> Iterator[tuple[sa.Connection, LockedModel, Rollout]]:
        """A write transaction holding the rollout's model lock and its row as read under it.

        Raises:
            NotFound: no such rollout (or its model was deleted meanwhile).
        """
        before = self.get(app_id, rollout_id)  # the model id never changes
        with translate_errors("move the rollout"), self._write() as conn, conn.begin():
            try:
                model = lock_model_row(conn, app_id, model_id=before.model_id)
            except NotFound as error:
                raise NotFound(
                    f"rollout {rollout_id} no longer exists: its model {before.model!r} was "
                    "deleted."
                ) from error
            query = sa.select(_ROLLOUTS).where(
                _ROLLOUTS.c.app_id == app_id, _ROLLOUTS.c.id == rollout_id
            )
            row = conn.execute(query.with_for_update()).first()
            if row is None:
                raise NotFound(f"rollout {rollout_id} no longer exists (its model was deleted).")
            yield conn, model, _rollout(row)

    def insert_in(self, conn: sa.Connection, values: dict[str, Any], audit: dict[str, Any]) -> None:
        """Insert a rollout and its creation audit row in the caller's transaction.

        Raises:
            Conflict: another rollout is active on the same model and channel.
        """
        active_key = f"{values['model_id']}:{values['channel']}"
        try:
            conn.execute(sa.insert(_ROLLOUTS).values(active_key=active_key, **values))
        except exc.IntegrityError as error:
            if "active_key" not in str(error.orig):
                raise
            raise Conflict(
                f"model {values['model']!r} already has an active rollout on channel "
                f"{values['channel']!r}; complete or roll it back first "
                "(pocketml rollout status)."
            ) from error
        self.insert_audit(conn, audit)

    def insert_audit(self, conn: sa.Connection, audit: dict[str, Any]) -> None:
        """Append one row to the audit log in the caller's transaction."""
        conn.execute(sa.insert(_AUDIT).values(**audit))

    def active_in(self, conn: sa.Connection, model_id: str) -> list[Rollout]:
        """The model's active (running or paused) rollouts, read in the caller's transaction."""
        query = sa.select(_ROLLOUTS).where(
            _ROLLOUTS.c.model_id == model_id, _ROLLOUTS.c.state.in_(ACTIVE)
        )
        return [_rollout(row) for row in conn.execute(query)]

    def delete_model_in(self, conn: sa.Connection, model_id: str) -> list[str]:
        """Delete a model's rollouts and targeting (their audit rows stay); their ids."""
        ids = [
            r[0]
            for r in conn.execute(sa.select(_ROLLOUTS.c.id).where(_ROLLOUTS.c.model_id == model_id))
        ]
        conn.execute(sa.delete(_ROLLOUTS).where(_ROLLOUTS.c.model_id == model_id))
        conn.execute(sa.delete(_TARGETING).where(_TARGETING.c.model_id == model_id))
        return ids

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

    def apply(
        self,
        conn: sa.Connection,
        current: Rollout,
        values: dict[str, Any],
        audit: dict[str, Any] | None,
    ) -> bool:
        """Apply ``values`` in the caller's transaction if the rollout is still in
        ``current``'s state and step (and append ``audit``).

        Returns:
            True when this call changed the row, False when another writer changed it
            first (then nothing was written).
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
        if conn.execute(query).rowcount != 1:
            return False
        if audit is not None:
            self.insert_audit(conn, audit)
        return True

    def transition(
        self, current: Rollout, values: dict[str, Any], audit: dict[str, Any] | None
    ) -> bool:
        """``apply`` in a transaction of its own: only for moves that touch this table alone
        (the evaluator's numbers); state transitions use ``locked`` + ``apply``."""
        with translate_errors("update the rollout"), self._write() as conn, conn.begin():
            return self.apply(conn, current, values, audit)

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
        return self._lease(name).acquire(owner, now, ttl_s)

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up early (only when ``owner`` holds it)."""
        self._lease(name).release(owner)

    def _lease(self, name: str) -> Lease:
        return Lease(self.engine, _LEASES, name, what="the evaluator lease")
