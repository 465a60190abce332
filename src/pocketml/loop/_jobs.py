"""Retraining jobs and loop policies in the database: the ``JobStore``.

Job states::

    queued --claim--> running --finish--> succeeded | rejected | failed
    running (lease expired: the server died) --recover--> failed

Every move is one conditional statement, so two replicas never disagree: ``create`` is an
insert under the ``active_key`` unique constraint (two triggers at once: one insert wins,
the other returns the winner's job), ``claim`` an ``UPDATE ... WHERE state = 'queued'``
(one replica's rowcount is 1), ``renew`` and every step write ``WHERE lease_owner = me``
(a replica that lost its lease learns it at the next step and stops). A finished job's
``active_key`` is NULL, so the next trigger may start a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc

from pocketml.db import WRITE, translate_errors
from pocketml.errors import Conflict, NotFound
from pocketml.loop._orm import LoopJobRow, LoopPolicyRow
from pocketml.loop._policy import LoopPolicy, parse_policy

__all__ = [
    "ACTIVE_STATES",
    "JOB_STATES",
    "JOB_STEPS",
    "MAX_LOG_LINES",
    "Job",
    "JobStore",
    "LeaseLost",
]

JOB_STATES = ("queued", "running", "succeeded", "rejected", "failed")
ACTIVE_STATES = ("queued", "running")
JOB_STEPS = ("collect", "build", "push", "gate", "rollout")
MAX_LOG_LINES = 200
_MAX_LINE = 500
JOBS = cast(sa.Table, LoopJobRow.__table__)
POLICIES = cast(sa.Table, LoopPolicyRow.__table__)


class LeaseLost(Conflict):
    """This replica no longer holds the job (its lease expired and it was recovered)."""


@dataclass(frozen=True)
class Job:
    """One retraining job as stored."""

    id: str
    app_id: str
    model: str
    trigger: str
    trigger_details: dict[str, Any]
    state: str
    step: str | None
    steps: list[dict[str, Any]]
    log: list[str]
    champion_version: int | None
    candidate_version: int | None
    samples: dict[str, Any]
    gate: dict[str, Any] | None
    rollout_id: str | None
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    lease_owner: str | None
    lease_expires_at: float | None

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self.state in ACTIVE_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (timestamps ISO 8601)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("created_at", "started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        app_id=row.app_id,
        model=row.model,
        trigger=row.trigger,
        trigger_details=dict(row.trigger_details or {}),
        state=row.state,
        step=row.step,
        steps=list(row.steps or []),
        log=list(row.log or []),
        champion_version=row.champion_version,
        candidate_version=row.candidate_version,
        samples=dict(row.samples or {}),
        gate=row.gate,
        rollout_id=row.rollout_id,
        error=row.error,
        created_by=row.created_by,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
    )


def _active_key(app_id: str, model: str) -> str:
    return f"{app_id}/{model}"


class JobStore:
    """The loop's rows on ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def _write(self, what: str) -> Iterator[sa.Connection]:
        with translate_errors(what), self.engine.connect() as conn:
            conn = conn.execution_options(**WRITE)
            with conn.begin():
                yield conn

    def _read(self, query: Any, what: str) -> list[Any]:
        with translate_errors(what), self.engine.connect() as conn:
            return list(conn.execute(query))

    # -- jobs ------------------------------------------------------------------------------

    def create(
        self,
        app_id: str,
        model: str,
        *,
        trigger: str,
        details: dict[str, Any],
        actor: str,
        now: datetime,
    ) -> tuple[Job, bool]:
        """Queue a job unless the model has an active one.

        Returns:
            (the job, True when it was created; False: the existing active job).
        """
        values = {
            "id": uuid.uuid4().hex,
            "app_id": app_id,
            "model": model,
            "active_key": _active_key(app_id, model),
            "trigger": trigger,
            "trigger_details": details,
            "state": "queued",
            "step": None,
            "steps": [],
            "log": [f"{now.isoformat()} queued by {actor} ({trigger})"],
            "samples": {},
            "created_by": actor,
            "created_at": now,
        }
        with translate_errors("queue the job"), self.engine.connect() as conn:
            conn = conn.execution_options(**WRITE)
            try:
                with conn.begin():
                    conn.execute(sa.insert(JOBS).values(**values))
                inserted = True
            except exc.IntegrityError:  # the model's active job holds active_key
                inserted = False
        if inserted:
            return self.get(app_id, str(values["id"])), True
        active = self.active(app_id, model)
        if active is None:  # it finished between our insert and this read
            raise Conflict(f"a job of {model!r} just finished; run again.")
        return active, False

    def active(self, app_id: str, model: str) -> Job | None:
        """The model's queued or running job, if any."""
        t = JOBS
        rows = self._read(
            sa.select(t).where(t.c.active_key == _active_key(app_id, model)), "read the job"
        )
        return _job(rows[0]) if rows else None

    def get(self, app_id: str, job_id: str) -> Job:
        """One job of the app. Raises NotFound."""
        t = JOBS
        rows = self._read(sa.select(t).where(t.c.id == job_id, t.c.app_id == app_id), "read job")
        if not rows:
            raise NotFound(f"no loop job {job_id!r} in this app; list them: pocketml loop status")
        return _job(rows[0])

    def list_jobs(self, app_id: str, model: str | None = None, *, limit: int = 50) -> list[Job]:
        """The app's (or model's) jobs, newest first."""
        t = JOBS
        query = sa.select(t).where(t.c.app_id == app_id)
        if model is not None:
            query = query.where(t.c.model == model)
        query = query.order_by(t.c.created_at.desc(), t.c.id).limit(limit)
        return [_job(row) for row in self._read(query, "list jobs")]

    def last(self, app_id: str, model: str) -> Job | None:
        """The model's most recent job, in any state."""
        jobs = self.list_jobs(app_id, model, limit=1)
        return jobs[0] if jobs else None

    def last_finished(self, app_id: str, model: str) -> Job | None:
        """The model's most recent job that ran to a verdict (succeeded or rejected)."""
        t = JOBS
        query = (
            sa.select(t)
            .where(t.c.app_id == app_id, t.c.model == model)
            .where(t.c.state.in_(("succeeded", "rejected")))
            .order_by(t.c.created_at.desc(), t.c.id)
            .limit(1)
        )
        rows = self._read(query, "read the last finished job")
        return _job(rows[0]) if rows else None

    def queued(self, limit: int = 10) -> list[Job]:
        """Queued jobs of every app, oldest first."""
        t = JOBS
        query = sa.select(t).where(t.c.state == "queued").order_by(t.c.created_at).limit(limit)
        return [_job(row) for row in self._read(query, "list queued jobs")]

    def stale(self, now: float, owner: str) -> list[Job]:
        """Running jobs whose lease expired before ``now`` (their server died), and those
        leased to ``owner`` (the caller: a restarted replica keeps its owner id, so a job
        still leased to it was running in its previous life)."""
        t = JOBS
        query = sa.select(t).where(
            t.c.state == "running", sa.or_(t.c.lease_expires_at < now, t.c.lease_owner == owner)
        )
        return [_job(row) for row in self._read(query, "list stale jobs")]

    def claim(self, job_id: str, owner: str, now: datetime, ttl_s: float) -> bool:
        """Start a queued job under ``owner``'s lease. True when this caller won it."""
        t = JOBS
        query = (
            sa.update(t)
            .where(t.c.id == job_id, t.c.state == "queued")
            .values(
                state="running",
                started_at=now,
                lease_owner=owner,
                lease_expires_at=now.timestamp() + ttl_s,
            )
        )
        with self._write("claim the job") as conn:
            return conn.execute(query).rowcount == 1

    def update(
        self, job: Job, owner: str, *, lease_until: float | None = None, **values: Any
    ) -> Job:
        """Write ``values`` to a running job while ``owner`` holds its lease (and renew it).

        Raises:
            Conflict: ``owner`` no longer holds the job (its lease expired and it was
                recovered elsewhere).
        """
        t = JOBS
        if lease_until is not None:
            values["lease_expires_at"] = lease_until
        if "log" in values:
            values["log"] = [str(line)[:_MAX_LINE] for line in values["log"]][-MAX_LOG_LINES:]
        query = (
            sa.update(t)
            .where(t.c.id == job.id, t.c.state == "running", t.c.lease_owner == owner)
            .values(**values)
        )
        with self._write("record the job's progress") as conn:
            if conn.execute(query).rowcount != 1:
                raise LeaseLost(f"job {job.id} is no longer held by {owner}; it was recovered.")
        return self.get(job.app_id, job.id)

    def finish(self, job: Job, owner: str | None, state: str, now: datetime, **values: Any) -> Job:
        """End a job in ``state`` (frees the model for the next job).

        ``owner`` None ends it whoever held it (recovery of an expired lease: the update is
        conditional on the lease still being expired, so a live holder is never ended).

        Raises:
            Conflict: the job was finished or taken over elsewhere.
        """
        t = JOBS
        query = sa.update(t).where(t.c.id == job.id, t.c.state.in_(ACTIVE_STATES))
        if owner is not None:
            query = query.where(t.c.lease_owner == owner)
        else:
            query = query.where(t.c.lease_expires_at < now.timestamp())
        if "log" in values:
            values["log"] = [str(line)[:_MAX_LINE] for line in values["log"]][-MAX_LOG_LINES:]
        query = query.values(
            state=state, active_key=None, finished_at=now, lease_expires_at=0.0, **values
        )
        with self._write("finish the job") as conn:
            if conn.execute(query).rowcount != 1:
                raise Conflict(f"job {job.id} was finished or taken over elsewhere.")
        return self.get(job.app_id, job.id)

    # -- policies --------------------------------------------------------------------------

    def get_policy(self, model_id: str) -> LoopPolicy:
        """The model's policy (the defaults when none is stored)."""
        t = POLICIES
        with translate_errors("read the loop policy"), self.engine.connect() as conn:
            row = conn.execute(sa.select(t.c.policy).where(t.c.model_id == model_id)).first()
        return parse_policy(row.policy if row is not None else {})

    def set_policy(
        self,
        app_id: str,
        model_id: str,
        model: str,
        policy: LoopPolicy,
        *,
        actor: str,
        now: datetime,
    ) -> None:
        """Store the model's policy (replacing the previous one), one transaction."""
        t = POLICIES
        values = {
            "app_id": app_id,
            "model": model,
            "policy": policy.to_dict(),
            "updated_by": actor,
            "updated_at": now,
        }
        with self._write("store the loop policy") as conn:
            changed = conn.execute(sa.update(t).where(t.c.model_id == model_id).values(**values))
            if changed.rowcount == 0:
                conn.execute(sa.insert(t).values(model_id=model_id, **values))

    def policies(self) -> list[tuple[str, str, LoopPolicy]]:
        """Every stored policy as (app_id, model, policy)."""
        t = POLICIES
        with translate_errors("read the loop policies"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.app_id, t.c.model, t.c.policy)).all()
        return [(row.app_id, row.model, parse_policy(row.policy)) for row in rows]
