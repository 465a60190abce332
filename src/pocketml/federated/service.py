"""``FederatedService``: federated tasks, their rounds, device participation, the result.

Task states::

    running --last round aggregated--> finishing --result pushed--> succeeded
    running --more than max_retries rounds without a model--> failed
    running | finishing --cancel--> cancelled

Round states (``number`` grows with every attempt, a retry is a new round)::

    open --enough reports by the deadline (or all in)--> aggregated
    open --fewer than min_reports--> no_model  (retried while retries remain)
    open --SecAgg below its threshold--> failed (never a wrong aggregate; retried the same)

A plain round's phase is ``collect``; a SecAgg round walks ``selecting -> advertise ->
share -> masked_input -> unmask -> done`` (docs/federated-protocol.md, §5). A phase ends
when every expected device answered (at once, in the request that completed it) or at its
deadline (in ``tick``, the server's background pass).

Everything lives in the database (``_orm.py``): a restarted server carries on with the
open round. Every change that touches two tables is one transaction, holding the round's
row (``FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). Advancing a round —
closing a phase, aggregating — happens only under the task's ``Lease``
(``federated_leases``), so two replicas never aggregate one round twice; an aggregation
also flips the round ``WHERE state = 'open'``, so even a lost lease cannot apply it twice.
A decision read outside a transaction is written only after re-checking under the round's
lock: a phase flip re-reads the participants, an aggregation checks that the buffered
updates are still those it read (else ``_Stale``: roll back, decide again), so a message
the server answered is never left out.

What the server keeps of a device: its client id, conditions it reported, and until the
round ends its update (plain rounds: robust aggregators need it) or its masked input and
SecAgg messages (uniform or unreadable on their own). All of them are deleted when the
round closes (with those of earlier rounds: FedBuff leftovers); the server never holds an
individual unmasked update of a SecAgg round. Forgetting a device deletes its rows
(``forget_device_rows``, called by the loop's ``forget_device``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from pocketml.db import WRITE, Lease, process_owner, translate_errors
from pocketml.errors import Conflict, InvalidInput, NotFound, PocketMLError
from pocketml.federated._accountant import PrivacyAccountant
from pocketml.federated._aggregate import coordinate_median, fedavg, trimmed_mean
from pocketml.federated._dp import AdaptiveClipping, DPFedAvg
from pocketml.federated._fedbuff import FedBuff
from pocketml.federated._model import HeadSpec, head_spec_of, read_head, write_head, write_json
from pocketml.federated._rows import (
    ACTIVE,
    LEASES,
    PARTS,
    ROUNDS,
    SHARES,
    TASKS,
    advert,
    b64,
    base_variant,
    canonical,
    check_plain_update,
    client_key,
    coin,
    lock_open_round,
    lock_task,
    norm_summary,
    participant,
    participants,
    pending_count,
    round_info,
    round_row,
    secagg_config,
    spec_of,
    task_info,
    task_row,
    unb64,
    unmask_response,
    values_count,
    with_log_line,
)
from pocketml.federated._secagg_server import SecAggServer
from pocketml.federated._spec import SECAGG_MIN_SUM, TaskSpec, parse_task_spec
from pocketml.federated._values import (
    Announcement,
    JoinAnswer,
    SecAggState,
    SignedDocument,
    TaskInfo,
    UploadAnswer,
)
from pocketml.fl import (
    Head,
    MaskedInput,
    SecAggAborted,
    clip_update,
)
from pocketml.protocol import (
    ROUND_SIGNATURE_CONTEXT,
    FlAlreadyReported,
    FlNotEligible,
    FlNotSelected,
    FlRoundClosed,
    FlSecAggInvalid,
    FlWrongPhase,
    FlWrongShape,
)

__all__ = ["FederatedService", "Pusher", "Signer"]

logger = logging.getLogger(__name__)


Signer = Callable[[str, bytes], tuple[str, bytes]]
"""``signer(app_id, data) -> (key_id, signature)``: the app's active package-signing key."""
Pusher = Callable[[str, str, Path, Mapping[str, Any]], int]
"""``pusher(app_id, model, build_dir, meta) -> version``: the loop's push path."""

_SECAGG_BITS = 32
_POLL_S = 2.0
_OPEN_CACHE_S = 1.0
_CONDITION_WORDS = {"charging": "charging", "wifi": "on Wi-Fi", "idle": "idle"}


class _Stale(Exception):
    """The round gained an update between the read that decided and the write that acts:
    the write is rolled back and ``advance`` decides again from a fresh read."""


class FederatedService:
    """Federated tasks of every app on one database.

    Args:
        engine: the database (the registry's).
        registry: the open registry (versions, packages, models).
        signer: signs round documents with the app's package-signing key.
        pusher: pushes a BUILD_DIR as a new version (the loop's push path).
        extract: ``extract(app_id, variant, dir) -> Path`` of a version's model file.
        work_dir: where results are built (one folder per task, removed afterwards).
        clock: unix seconds.
        owner: this replica's lease owner id.
        lease_ttl_s: how long a task's lease lasts between two renewals.
        check_targeting: validates a task's targeting rules (the delivery's parser);
            None accepts them unchecked.
        start_rollout: ``start_rollout(app_id, model, version, options, actor) -> id``
            starts a staged rollout of the result (the delivery's rollouts) when the task
            asks for one; None leaves every result a candidate.
        max_update_bytes: the largest update body the server's routes take (a task whose
            head would not fit is refused at start); None: no check.
    """

    def __init__(
        self,
        engine: sa.Engine,
        registry: Any,
        *,
        signer: Signer,
        pusher: Pusher,
        extract: Callable[[str, Any, Path], Path],
        work_dir: Path,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        lease_ttl_s: float = 120.0,
        check_targeting: Callable[[list[dict[str, Any]]], Any] | None = None,
        start_rollout: Callable[[str, str, int, dict[str, Any], str], str] | None = None,
        max_update_bytes: int | None = None,
    ) -> None:
        self.engine = engine
        self.registry = registry
        self.signer = signer
        self.pusher = pusher
        self.extract = extract
        self.work_dir = Path(work_dir)
        self.clock = clock
        self.owner = owner or process_owner()
        self.lease_ttl_s = lease_ttl_s
        self.check_targeting = check_targeting
        self.start_rollout = start_rollout
        self.max_update_bytes = max_update_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._accountants: dict[str, PrivacyAccountant] = {}
        self._open: dict[str, tuple[float, list[Announcement]]] = {}

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[sa.Connection]:
        with translate_errors(what), self.engine.connect() as conn:
            conn = conn.execution_options(**WRITE)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[sa.Connection]:
        with translate_errors(what), self.engine.connect() as conn:
            yield conn

    def _now(self) -> float:
        return float(self.clock())

    @staticmethod
    def _dt(now: float) -> datetime:
        return datetime.fromtimestamp(now, UTC)

    def _task_lock(self, task_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(task_id, threading.Lock())

    def _lease(self, task_id: str) -> Lease:
        return Lease(self.engine, LEASES, f"task:{task_id}", what="the federated task lease")

    def _changed(self, app_id: str) -> None:
        self._open.pop(app_id, None)

    # -- tasks (operators) ------------------------------------------------------------------

    def create_task(
        self, app_id: str, model: str, raw_spec: Mapping[str, Any], *, actor: str
    ) -> TaskInfo:
        """Start a federated task on ``model`` from ``raw_spec["version"]``; opens round 1.

        Raises:
            InvalidInput: a bad setting or a version that is not federatable.
            NotFound: no such model or version. Conflict: the model has a running task.
        """
        spec = parse_task_spec(raw_spec)
        if self.check_targeting is not None:
            self.check_targeting(list(spec.targeting))
        version = self.registry.get_version(app_id, model, spec.version)
        where = f"version {spec.version} of {model!r}"
        head_spec = head_spec_of(version.params, where)
        variant = base_variant(version, where)
        path = self.extract(app_id, variant, self.work_dir / "models")
        head = read_head(path, head_spec, where)
        now = self._now()
        task_id = "flt_" + secrets.token_hex(8)
        head_meta = {
            **head_spec.to_dict(),
            "dim": int(head.weights.shape[0]),
            "classes": int(head.weights.shape[1]),
        }
        weights = head.to_vector().astype("<f4").tobytes()
        values = {
            "id": task_id,
            "app_id": app_id,
            "model": model,
            "base_version": spec.version,
            "active_key": f"{app_id}/{model}",
            "state": "running",
            "config": spec.to_dict(),
            "head": head_meta,
            "weights": weights,
            "clip_norm": spec.clip_norm,
            "round": 1,
            "rounds_done": 0,
            "retries_used": 0,
            "clients_total": 0,
            "epsilon": 0.0 if spec.dp else None,
            "result_version": None,
            "error": None,
            "log": [f"{self._dt(now).isoformat()} started by {actor}"],
            "created_by": actor,
            "created_at": self._dt(now),
            "updated_at": self._dt(now),
            "finished_at": None,
        }
        if self.max_update_bytes is not None and len(weights) > self.max_update_bytes:
            raise InvalidInput(
                f"{where}: its head has {head.size} values ({len(weights)} bytes per update); "
                f"the server takes device bodies up to {self.max_update_bytes} bytes: raise "
                "POCKETML_SERVER__LIMITS__MAX_DEVICE_BODY_KB or federate a smaller head."
            )
        first = self._round_values(task_id, app_id, model, spec, head_meta, weights, 1, now)
        try:
            with self._write("start the federated task") as conn:
                conn.execute(sa.insert(TASKS).values(**values))
                conn.execute(sa.insert(ROUNDS).values(**first))
        except Conflict as exc:
            raise Conflict(
                f"model {model!r} has a running federated task; cancel it first "
                "(pocketml fl status / pocketml fl cancel TASK)."
            ) from exc
        self._changed(app_id)
        return self.get_task(app_id, task_id)

    def _round_values(
        self,
        task_id: str,
        app_id: str,
        model: str,
        spec: TaskSpec,
        head_meta: Mapping[str, Any],
        weights: bytes,
        number: int,
        now: float,
        clip_norm: float | None = None,
    ) -> dict[str, Any]:
        """The row of a new round, with its signed document."""
        clip = spec.clip_norm if clip_norm is None else clip_norm
        deadline = now + spec.round_timeout_s
        secagg = None
        if spec.secagg:
            secagg = {
                "bits": _SECAGG_BITS,
                "max_clients": spec.max_cohort,
                "neighbours": spec.secagg_neighbours,
                "graph_seed": b64(secrets.token_bytes(32)),
                "secagg_round_id": f"{task_id}/{number}",
            }
        n_values = int(head_meta["dim"]) * int(head_meta["classes"]) + int(head_meta["classes"])
        document = {
            "task_id": task_id,
            "round": number,
            "model": model,
            "base_version": spec.version,
            "kind": "head",
            "head": {
                "embedding_output": head_meta["embedding_output"],
                "dim": head_meta["dim"],
                "classes": head_meta["classes"],
            },
            "n_values": n_values,
            "weights": b64(weights),
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
            "recipe": {
                "epochs": spec.recipe.epochs,
                "batch_size": spec.recipe.batch_size,
                "learning_rate": spec.recipe.learning_rate,
                "l2": spec.recipe.l2,
            },
            "clip_norm": clip,
            "local_noise_std": spec.local_noise_std,
            "deadline": deadline,
            "upload": "secagg" if spec.secagg else "float32",
            "secagg": secagg,
        }
        body = canonical(document)
        key_id, signature = self.signer(app_id, ROUND_SIGNATURE_CONTEXT + body)
        join_until = now + spec.join_window
        return {
            "task_id": task_id,
            "number": number,
            "state": "open",
            "phase": "selecting" if spec.secagg else "collect",
            "opened_at": now,
            "join_until": join_until,
            "deadline": deadline,
            "phase_deadline": join_until,
            "clip_norm": clip,
            "document": body,
            "signature": signature,
            "key_id": key_id,
            "secagg": secagg,
            "selected": 0,
            "reports": 0,
            "outcome": None,
            "closed_at": None,
        }

    def list_tasks(
        self, app_id: str, model: str | None = None, *, limit: int = 50
    ) -> list[TaskInfo]:
        """The app's (or a model's) tasks, newest first, without their rounds."""
        query = sa.select(TASKS).where(TASKS.c.app_id == app_id)
        if model is not None:
            query = query.where(TASKS.c.model == model)
        query = query.order_by(TASKS.c.created_at.desc(), TASKS.c.id).limit(limit)
        with self._read("list federated tasks") as conn:
            return [task_info(row) for row in conn.execute(query)]

    def get_task(self, app_id: str, task_id: str) -> TaskInfo:
        """One task with its rounds. Raises NotFound."""
        with self._read("read the federated task") as conn:
            row = conn.execute(
                sa.select(TASKS).where(TASKS.c.id == task_id, TASKS.c.app_id == app_id)
            ).first()
            if row is None:
                raise NotFound(
                    f"no federated task {task_id!r} in this app; list them: pocketml fl status"
                )
            rounds = conn.execute(
                sa.select(ROUNDS).where(ROUNDS.c.task_id == task_id).order_by(ROUNDS.c.number)
            ).all()
        return replace(task_info(row), rounds=tuple(round_info(r) for r in rounds))

    def cancel_task(self, app_id: str, task_id: str, *, actor: str) -> TaskInfo:
        """Cancel a running task: its open round closes and what devices sent is deleted.

        Raises:
            NotFound: no such task. Conflict: the task is over already.
        """
        now = self._now()
        with self._write("cancel the federated task") as conn:
            task = lock_task(conn, app_id, task_id)
            if task.state not in ACTIVE:
                raise Conflict(f"task {task_id} is {task.state} already; nothing to cancel.")
            self._close_round(conn, task_id, task.round, "cancelled", {"reason": "cancelled"}, now)
            conn.execute(
                sa.update(TASKS)
                .where(TASKS.c.id == task_id)
                .values(
                    state="cancelled",
                    active_key=None,
                    finished_at=self._dt(now),
                    updated_at=self._dt(now),
                    log=with_log_line(task.log, now, f"cancelled by {actor}"),
                )
            )
        self._changed(app_id)
        return self.get_task(app_id, task_id)

    # -- the check-in announcement -----------------------------------------------------------

    def cached_announcements(self, app_id: str) -> list[Announcement] | None:
        """The announcements when memory holds fresh ones (no database), else None."""
        now = self._now()
        cached = self._open.get(app_id)
        if cached is None or now - cached[0] >= _OPEN_CACHE_S:
            return None
        return [a for a in cached[1] if a.join_until > now]

    def announcements(self, app_id: str) -> list[Announcement]:
        """The app's tasks whose current round takes joins (memoised for a second).

        The caller (the check-in) keeps those whose ``targeting`` matches the device.
        """
        with self._task_lock(f"announcements:{app_id}"):  # one read per app at a time
            fresh = self.cached_announcements(app_id)
            return fresh if fresh is not None else self._read_announcements(app_id)

    def _read_announcements(self, app_id: str) -> list[Announcement]:
        now = self._now()
        query = (
            sa.select(TASKS, ROUNDS.c.join_until, ROUNDS.c.selected, ROUNDS.c.phase)
            .join(
                ROUNDS,
                sa.and_(ROUNDS.c.task_id == TASKS.c.id, ROUNDS.c.number == TASKS.c.round),
            )
            .where(
                TASKS.c.app_id == app_id,
                TASKS.c.state == "running",
                ROUNDS.c.state == "open",
                ROUNDS.c.phase.in_(("collect", "selecting")),
            )
        )
        out = []
        with self._read("read open federated tasks") as conn:
            for row in conn.execute(query):
                spec = spec_of(row.config)
                if row.selected >= spec.max_cohort or row.join_until <= now:
                    continue
                out.append(
                    Announcement(
                        task_id=row.id,
                        model=row.model,
                        base_version=row.base_version,
                        round=row.round,
                        requires=spec.requires.to_dict(),
                        join_until=row.join_until,
                        targeting=spec.targeting,
                    )
                )
        self._open[app_id] = (now, out)
        return out

    # -- device participation ----------------------------------------------------------------

    def join(
        self,
        app_id: str,
        task_id: str,
        *,
        device_id: str,
        round_number: int,
        conditions: Mapping[str, bool],
        num_samples: int,
        base_version: int,
    ) -> JoinAnswer:
        """Select a device for the open round, or say why not (idempotent per device/round).

        Raises:
            NotFound, FlTaskClosed, FlWrongRound, FlRoundClosed, FlNotEligible, FlNotSelected.
        """
        now = self._now()
        with self._write("join the federated round") as conn:
            task, rnd = lock_open_round(conn, app_id, task_id, round_number)
            spec = spec_of(task.config)
            mine = participant(conn, task_id, round_number, device_id)
            if mine is not None:
                return JoinAnswer(task_id, round_number, mine.client_id, spec.secagg, rnd.deadline)
            for name in ("charging", "wifi", "idle"):
                if getattr(spec.requires, name) and not conditions.get(name, False):
                    raise FlNotEligible(
                        f"field 'conditions.{name}': this task needs devices that are "
                        f"{_CONDITION_WORDS[name]}; join again when it is true."
                    )
            if num_samples < spec.requires.min_samples:
                raise FlNotEligible(
                    f"field 'num_samples': this task needs at least "
                    f"{spec.requires.min_samples} local samples; got {num_samples}."
                )
            if base_version != task.base_version:
                raise FlNotEligible(
                    f"field 'base_version': this task trains from version {task.base_version} "
                    f"of {task.model!r}; the device holds {base_version}."
                )
            selecting = rnd.phase in ("collect", "selecting")
            if not selecting or now > rnd.join_until or rnd.selected >= spec.max_cohort:
                raise FlRoundClosed(
                    f"round {round_number} takes no more joins; try the next round at a later "
                    "check-in."
                )
            q = spec.sampling_probability
            if q is not None and coin(task_id, round_number, device_id) >= q:
                raise FlNotSelected(
                    f"field 'device_id': the device was not sampled for round {round_number} "
                    f"(probability {q:.3g}); try a later round."
                )
            client_id = rnd.selected + 1
            conn.execute(
                sa.insert(PARTS).values(
                    task_id=task_id,
                    round=round_number,
                    device_id=device_id,
                    client_id=client_id,
                    state="selected",
                    num_samples=int(num_samples),
                    joined_at=now,
                    shared=False,
                )
            )
            conn.execute(
                sa.update(ROUNDS)
                .where(ROUNDS.c.task_id == task_id, ROUNDS.c.number == round_number)
                .values(selected=client_id)
            )
        if client_id >= spec.max_cohort:  # selection is over: no more announcing it
            self._changed(app_id)
            self.advance(task_id)  # and SecAgg moves on at once
        return JoinAnswer(task_id, round_number, client_id, spec.secagg, rnd.deadline)

    def round_document(
        self, app_id: str, task_id: str, round_number: int, device_id: str
    ) -> SignedDocument:
        """The signed round document for a selected device.

        Raises:
            NotFound: no such task or round. FlNotSelected: the device is not in the round.
        """
        with self._read("read the round document") as conn:
            task = task_row(conn, app_id, task_id)
            rnd = conn.execute(
                sa.select(ROUNDS).where(
                    ROUNDS.c.task_id == task.id, ROUNDS.c.number == round_number
                )
            ).first()
            if rnd is None:
                raise NotFound(f"task {task_id} has no round {round_number}.")
            if participant(conn, task_id, round_number, device_id) is None:
                raise FlNotSelected(
                    f"field 'device_id': the device was not selected for round {round_number}; "
                    "join it first."
                )
        return SignedDocument(bytes(rnd.document), rnd.key_id, bytes(rnd.signature))

    def upload(
        self,
        app_id: str,
        task_id: str,
        round_number: int,
        *,
        device_id: str,
        num_samples: int,
        idempotency_key: str,
        body: bytes,
        clipped: bool | None = None,
    ) -> UploadAnswer:
        """Store a device's update (plain float32) or masked input (SecAgg uint32).

        ``clipped``: whether the device clipped a plain update (its norm was above the
        round's ``clip_norm``), counted by adaptive clipping; None: not said, the server's
        measurement counts. Ignored for a masked input.

        Raises:
            FlWrongShape, FlNotFinite, FlNormTooLarge (422, never stored), FlAlreadyReported,
            FlWrongRound, FlRoundClosed, FlWrongPhase, FlTaskClosed (409), FlNotSelected
            (403), NotFound.
        """
        now = self._now()
        digest = hashlib.sha256(body).hexdigest()
        with self._write("store the update") as conn:
            task_row(conn, app_id, task_id)
            # a retry is answered as the first time even once the round is over
            repeat = _repeated_upload(
                conn, task_id, round_number, device_id, idempotency_key, digest
            )
            if repeat is not None:
                return repeat
            task, rnd, clip_norm = _lock_upload_round(conn, app_id, task_id, round_number)
            # read again under the round's lock: an upload of this device that committed
            # since the first read (another key, a second request) is seen now
            repeat = _repeated_upload(
                conn, task_id, round_number, device_id, idempotency_key, digest
            )
            if repeat is not None:
                return repeat
            mine = participant(conn, task_id, round_number, device_id)
            spec = spec_of(task.config)
            if mine is None:
                raise FlNotSelected(
                    f"field 'device_id': the device was not selected for round {round_number}."
                )
            if now > rnd.deadline:
                raise FlRoundClosed(f"round {round_number}'s deadline has passed.")
            expected = "masked_input" if spec.secagg else "collect"
            if rnd.phase != expected:
                raise FlWrongPhase(
                    f"round {round_number} is in phase {rnd.phase!r}; updates are taken in "
                    f"{expected!r}."
                )
            n_values = values_count(task.head)
            if spec.secagg:
                if not mine.shared:
                    raise FlRoundClosed(
                        f"the device did not share keys in round {round_number}; it cannot "
                        "send a masked input."
                    )
                if len(body) != 4 * n_values:
                    raise FlWrongShape(
                        f"field 'update': a masked input is {n_values} uint32 values "
                        f"({4 * n_values} bytes); got {len(body)} bytes."
                    )
            else:
                check_plain_update(task_id, round_number, body, n_values, clip_norm)
            conn.execute(
                sa.update(PARTS)
                .where(
                    PARTS.c.task_id == task_id,
                    PARTS.c.round == round_number,
                    PARTS.c.device_id == device_id,
                )
                .values(
                    state="reported",
                    payload=body,
                    idempotency_key=idempotency_key,
                    update_sha256=digest,
                    # FedAvg's weight: never more than the join claimed (an upload must
                    # not outweigh the cohort after the fact)
                    num_samples=min(max(1, int(num_samples)), int(mine.num_samples)),
                    clipped=None if spec.secagg else clipped,
                )
            )
            reports = rnd.reports + 1
            conn.execute(
                sa.update(ROUNDS)
                .where(ROUNDS.c.task_id == task_id, ROUNDS.c.number == rnd.number)
                .values(reports=reports)
            )
            pending = pending_count(conn, task_id, round_number)
        if pending == 0 or spec.secagg or spec.fedbuff:  # the round (or phase) may end now
            self.advance(task_id)
        return UploadAnswer(True, False, round_number, reports)

    def leave(
        self, app_id: str, task_id: str, round_number: int, *, device_id: str, reason: str
    ) -> bool:
        """A device gives up the round; returns False when it had left (or reported) already.

        A plain update that was reported stays in the round. In a SecAgg round's ``unmask``
        phase a survivor may leave too: its masked input stays in the sum, and the phase no
        longer waits for its unmask answer (the others' shares may still suffice).
        """
        with self._write("leave the round") as conn:
            task_row(conn, app_id, task_id)
            rnd = conn.execute(
                sa.select(ROUNDS.c.phase, ROUNDS.c.secagg).where(
                    ROUNDS.c.task_id == task_id, ROUNDS.c.number == round_number
                )
            ).first()
            unmasking = rnd is not None and rnd.secagg is not None and rnd.phase == "unmask"
            stays = ("left",) if unmasking else ("reported", "left")
            query = sa.update(PARTS).where(
                PARTS.c.task_id == task_id,
                PARTS.c.round == round_number,
                PARTS.c.device_id == device_id,
                PARTS.c.state.not_in(stays),
            )
            if unmasking:
                query = query.where(PARTS.c.unmask.is_(None))
            updated = conn.execute(query.values(state="left")).rowcount
        if updated:
            logger.info("device left round %s of %s: %s", round_number, task_id, reason)
            self.advance(task_id)
        return bool(updated)

    # -- SecAgg messages ---------------------------------------------------------------------

    def secagg_state(
        self, app_id: str, task_id: str, round_number: int, device_id: str
    ) -> SecAggState:
        """The SecAgg state of a round as ``device_id`` sees it (polled).

        Raises:
            NotFound, FlNotSelected, FlWrongPhase (not a SecAgg round).
        """
        with self._read("read the SecAgg state") as conn:
            task = task_row(conn, app_id, task_id)
            rnd = round_row(conn, task_id, round_number)
            if rnd.secagg is None:
                raise FlWrongPhase(f"round {round_number} of {task_id} is not a SecAgg round.")
            mine = participant(conn, task_id, round_number, device_id)
            if mine is None:
                raise FlNotSelected(
                    f"field 'device_id': the device was not selected for round {round_number}."
                )
            config = None
            roster = inbox = survivors = dropped = None
            phase = rnd.phase
            if "client_ids" in rnd.secagg:
                config = {
                    **{k: v for k, v in rnd.secagg.items() if k != "survivors"},
                    "clip_norm": rnd.clip_norm,
                    "n_values": values_count(task.head),
                }
                config.pop("dropped", None)
            order = ("advertise", "share", "masked_input", "unmask", "done")
            reached = order.index(phase) if phase in order else -1
            if reached >= order.index("share"):
                roster = {
                    str(p.client_id): dict(p.advert)
                    for p in participants(conn, task_id, round_number)
                    if p.advert is not None
                }
            if reached >= order.index("masked_input"):
                rows = conn.execute(
                    sa.select(SHARES.c.sender, SHARES.c.ciphertext).where(
                        SHARES.c.task_id == task_id,
                        SHARES.c.round == round_number,
                        SHARES.c.recipient == mine.client_id,
                    )
                ).all()
                inbox = {str(r.sender): b64(bytes(r.ciphertext)) for r in rows}
            if reached >= order.index("unmask"):
                survivors = list(rnd.secagg.get("survivors", []))
                dropped = list(rnd.secagg.get("dropped", []))
        return SecAggState(
            phase=phase,
            deadline=rnd.phase_deadline,
            poll_after_s=_POLL_S,
            config=config,
            roster=roster,
            inbox=inbox,
            survivors=survivors,
            dropped=dropped,
        )

    @contextmanager
    def _in_phase(
        self, app_id: str, task_id: str, round_number: int, device_id: str, phase: str
    ) -> Iterator[tuple[sa.Connection, Any, Any, Any]]:
        with self._write(f"store the SecAgg {phase} message") as conn:
            task, rnd = lock_open_round(conn, app_id, task_id, round_number)
            mine = participant(conn, task_id, round_number, device_id)
            if mine is None:
                raise FlNotSelected(
                    f"field 'device_id': the device was not selected for round {round_number}."
                )
            if rnd.phase != phase:
                raise FlWrongPhase(
                    f"round {round_number} is in phase {rnd.phase!r}, not {phase!r}; poll "
                    f"GET .../rounds/{round_number}/secagg."
                )
            yield conn, task, rnd, mine

    def secagg_keys(
        self, app_id: str, task_id: str, round_number: int, device_id: str, body: Mapping[str, Any]
    ) -> UploadAnswer:
        """Step 1: a device's two public keys and seed commitment."""
        keys = {
            name: b64(unb64(body.get(name), name, 32))
            for name in ("cipher_public", "mask_public", "seed_commitment")
        }
        with self._in_phase(app_id, task_id, round_number, device_id, "advertise") as (
            conn,
            task,
            rnd,
            mine,
        ):
            if mine.advert is not None:
                if dict(mine.advert) == keys:
                    return UploadAnswer(True, True, round_number, 0)
                raise FlAlreadyReported("the device advertised other keys for this round.")
            server = SecAggServer(secagg_config(task, rnd))
            try:
                server.receive_keys([advert(mine.client_id, keys)])
            except InvalidInput as exc:
                raise FlSecAggInvalid(f"field 'cipher_public': {exc}") from exc
            _update_participant(
                conn, task_id, round_number, device_id, advert=keys, state="advertised"
            )
        self.advance(task_id)
        return UploadAnswer(True, False, round_number, 0)

    def secagg_shares(
        self, app_id: str, task_id: str, round_number: int, device_id: str, body: Mapping[str, Any]
    ) -> UploadAnswer:
        """Step 2: a device's encrypted shares, one per neighbour with keys."""
        raw = body.get("shares")
        if not isinstance(raw, Mapping):
            raise FlSecAggInvalid("field 'shares' must be an object: recipient id -> base64")
        sealed = {client_key(k, "shares"): unb64(v, f"shares.{k}") for k, v in raw.items()}
        with self._in_phase(app_id, task_id, round_number, device_id, "share") as (
            conn,
            task,
            rnd,
            mine,
        ):
            if mine.shared:
                sent = conn.execute(
                    sa.select(SHARES.c.recipient, SHARES.c.ciphertext).where(
                        SHARES.c.task_id == task_id,
                        SHARES.c.round == round_number,
                        SHARES.c.sender == mine.client_id,
                    )
                ).all()
                if {int(r.recipient): bytes(r.ciphertext) for r in sent} == sealed:
                    return UploadAnswer(True, True, round_number, 0)
                raise FlAlreadyReported("the device sent other shares for this round already.")
            if mine.advert is None:
                raise FlRoundClosed("the device did not advertise keys; it is out of the round.")
            server = self._replay(conn, task, rnd, upto="advertise")
            try:
                server.receive_shares(mine.client_id, sealed)
            except InvalidInput as exc:
                raise FlSecAggInvalid(f"field 'shares': {exc}") from exc
            conn.execute(
                sa.insert(SHARES),
                [
                    {
                        "task_id": task_id,
                        "round": round_number,
                        "sender": mine.client_id,
                        "recipient": recipient,
                        "ciphertext": data,
                    }
                    for recipient, data in sealed.items()
                ],
            )
            _update_participant(conn, task_id, round_number, device_id, shared=True, state="shared")
        self.advance(task_id)
        return UploadAnswer(True, False, round_number, 0)

    def secagg_unmask(
        self, app_id: str, task_id: str, round_number: int, device_id: str, body: Mapping[str, Any]
    ) -> UploadAnswer:
        """Step 4: a survivor's shares of survivors' seeds and dropped clients' keys."""
        parsed: dict[str, dict[str, str]] = {}
        for kind in ("self_mask_shares", "mask_key_shares"):
            raw = body.get(kind) or {}
            if not isinstance(raw, Mapping):
                raise FlSecAggInvalid(f"field '{kind}' must be an object: owner id -> base64")
            parsed[kind] = {
                str(client_key(k, kind)): b64(unb64(v, f"{kind}.{k}", 33)) for k, v in raw.items()
            }
        with self._in_phase(app_id, task_id, round_number, device_id, "unmask") as (
            conn,
            task,
            rnd,
            mine,
        ):
            if mine.unmask is not None:
                if dict(mine.unmask) == parsed:
                    return UploadAnswer(True, True, round_number, 0)
                raise FlAlreadyReported("the device answered the unmask request already.")
            server = self._replay(conn, task, rnd, upto="unmask")
            try:
                server.receive_unmask(unmask_response(mine.client_id, parsed))
            except InvalidInput as exc:
                raise FlSecAggInvalid(f"field 'self_mask_shares': {exc}") from exc
            _update_participant(conn, task_id, round_number, device_id, unmask=parsed)
        self.advance(task_id)
        return UploadAnswer(True, False, round_number, 0)

    def _replay(self, conn: sa.Connection, task: Any, rnd: Any, *, upto: str) -> SecAggServer:
        """A ``SecAggServer`` holding what the round stored, replayed in protocol order."""
        server = SecAggServer(secagg_config(task, rnd))
        parts = sorted(participants(conn, task.id, rnd.number), key=lambda p: p.client_id)
        adverts = [advert(p.client_id, p.advert) for p in parts if p.advert is not None]
        server.receive_keys(adverts)
        if upto == "advertise":
            return server
        shares = conn.execute(
            sa.select(SHARES).where(SHARES.c.task_id == task.id, SHARES.c.round == rnd.number)
        ).all()
        outbox: dict[int, dict[int, bytes]] = {}
        for s in shares:
            outbox.setdefault(int(s.sender), {})[int(s.recipient)] = bytes(s.ciphertext)
        for sender in sorted(outbox):
            server.receive_shares(sender, outbox[sender])
        listed = rnd.secagg.get("survivors")  # fixed when the phase flipped to unmask
        for p in parts:
            if p.shared and p.payload is not None and (listed is None or p.client_id in listed):
                values = np.frombuffer(bytes(p.payload), dtype="<u4").astype(np.uint64)
                server.receive_masked_input(MaskedInput(p.client_id, values))
        server.unmask_request()
        for p in parts:
            if p.unmask is not None:
                server.receive_unmask(unmask_response(p.client_id, p.unmask))
        return server

    # -- advancing rounds --------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[str]:
        """One background pass: advance every active task whose lease this replica gets.

        Returns:
            The ids of the tasks that changed state or round.
        """
        with self._read("list active federated tasks") as conn:
            ids = [
                r.id
                for r in conn.execute(
                    sa.select(TASKS.c.id).where(TASKS.c.state.in_(ACTIVE)).order_by(TASKS.c.id)
                )
            ]
        return [task_id for task_id in ids if self.advance(task_id, now)]

    def advance(self, task_id: str, now: float | None = None) -> bool:
        """Close whatever is due in ``task_id``'s current round (under the task's lease).

        Returns:
            True when something changed. A replica without the lease does nothing.
        """
        lock = self._task_lock(task_id)
        if not lock.acquire(blocking=True, timeout=30):
            return False
        try:
            current = self._now() if now is None else now
            lease = self._lease(task_id)
            if not lease.acquire(self.owner, current, self.lease_ttl_s):
                return False
            changed = False
            for _ in range(8):  # a closed phase may make the next one due at once
                try:
                    step = self._advance_once(task_id, current)
                except _Stale:
                    continue
                if not step:
                    break
                changed = True
            return changed
        except PocketMLError as error:  # e.g. the database is down: the next pass retries
            logger.warning("federated task %s: %s", task_id, error)
            return False
        except Exception:  # a bug must not fail the device request that stored its message
            logger.exception("federated task %s: advancing the round failed", task_id)
            return False
        finally:
            lock.release()

    def _advance_once(self, task_id: str, now: float) -> bool:
        with self._read("read the federated task") as conn:
            task = conn.execute(sa.select(TASKS).where(TASKS.c.id == task_id)).first()
            if task is None or task.state not in ACTIVE:
                return False
            rnd = round_row(conn, task_id, task.round)
            parts = participants(conn, task_id, task.round)
        if task.state == "finishing":
            self._ship(task, now)
            return True
        if rnd.state != "open":
            return False
        spec = spec_of(task.config)
        if spec.fedbuff:
            return self._advance_fedbuff(task, rnd, spec, now)
        if rnd.secagg is None:
            return self._advance_plain(task, rnd, parts, spec, now)
        return self._advance_secagg(task, rnd, parts, spec, now)

    def _advance_fedbuff(self, task: Any, rnd: Any, spec: TaskSpec, now: float) -> bool:
        """FedBuff: step once ``K`` updates are buffered (from this round or up to
        ``fedbuff_max_staleness`` older ones), each weighted by ``(1 + τ)^-α``; at the
        deadline, step with what is buffered if it reaches ``min_reports``."""
        oldest = task.round - spec.fedbuff_max_staleness
        with self._read("read the FedBuff buffer") as conn:
            batch = conn.execute(
                sa.select(PARTS)
                .where(
                    PARTS.c.task_id == task.id,
                    PARTS.c.round >= oldest,
                    PARTS.c.round <= task.round,
                    PARTS.c.state == "reported",
                    PARTS.c.payload.is_not(None),
                )
                .order_by(PARTS.c.round, PARTS.c.client_id)
            ).all()
        if len(batch) < spec.buffer_size:
            if now <= rnd.deadline:
                return False
            if len(batch) < spec.min_reports:
                return self._fail_round(
                    task,
                    rnd,
                    "no_model",
                    f"{len(batch)} buffered updates by the deadline; min_reports is "
                    f"{spec.min_reports}",
                    now,
                    read=[(int(p.round), str(p.device_id)) for p in batch],
                )
        weights = np.frombuffer(bytes(task.weights), dtype="<f4").astype(np.float64)
        buffer = FedBuff(
            weights,
            buffer_size=len(batch),
            server_learning_rate=spec.fedbuff_server_learning_rate,
            staleness_exponent=spec.fedbuff_staleness_exponent,
            max_staleness=spec.fedbuff_max_staleness,
        )
        buffer.version = task.round
        updates = [np.frombuffer(bytes(p.payload), dtype="<f4").astype(np.float64) for p in batch]
        model = weights
        for p, update in zip(batch, updates, strict=True):
            result = buffer.submit(clip_update(update, float(rnd.clip_norm))[0], int(p.round))
            if result.model is not None:
                model = result.model
        outcome = {
            "reports": len(batch),
            "norms": norm_summary(updates),
            "aggregator": "fedbuff",
            "staleness": [task.round - int(p.round) for p in batch],
        }
        consumed = [(int(p.round), str(p.device_id)) for p in batch]
        return self._apply(
            task,
            rnd,
            spec,
            model - weights,
            len(batch),
            float(rnd.clip_norm),
            outcome,
            now,
            consumed=consumed,
        )

    def _advance_plain(
        self, task: Any, rnd: Any, parts: Sequence[Any], spec: TaskSpec, now: float
    ) -> bool:
        selection_over = rnd.selected >= spec.max_cohort or now > rnd.join_until
        reported = [p for p in parts if p.state == "reported"]
        pending = [p for p in parts if p.state not in ("reported", "left")]
        if now > rnd.deadline or (selection_over and not pending and parts):
            if len(reported) < spec.min_reports:
                return self._fail_round(
                    task,
                    rnd,
                    "no_model",
                    f"{len(reported)} reports by the deadline; min_reports is {spec.min_reports}",
                    now,
                    read=[(rnd.number, str(p.device_id)) for p in reported],
                )
            return self._aggregate_plain(task, rnd, reported, spec, now)
        if selection_over and rnd.selected < spec.min_reports:
            return self._fail_round(
                task,
                rnd,
                "no_model",
                f"{rnd.selected} devices joined; min_reports is {spec.min_reports}",
                now,
            )
        return False

    def _advance_secagg(
        self, task: Any, rnd: Any, parts: Sequence[Any], spec: TaskSpec, now: float
    ) -> bool:
        phase = rnd.phase
        due = now > rnd.phase_deadline or now > rnd.deadline
        live = [p for p in parts if p.state != "left"]
        least = max(SECAGG_MIN_SUM, spec.min_reports)  # inputs the sum must have
        if phase == "selecting":
            if not (rnd.selected >= spec.max_cohort or now > rnd.join_until):
                return False
            if rnd.selected < least:
                return self._fail_round(
                    task,
                    rnd,
                    "no_model",
                    f"{rnd.selected} devices joined; a SecAgg round needs {least}",
                    now,
                )

            def cohort(fresh: Sequence[Any]) -> dict[str, Any]:
                ids = sorted(p.client_id for p in fresh)
                k = spec.secagg_neighbours
                neighbours = k if k is not None and k < len(ids) - 1 else None
                degree = len(ids) - 1 if neighbours is None else neighbours
                threshold = min(
                    degree, max(degree // 2 + 1, math.ceil(spec.secagg_threshold * degree))
                )
                return {
                    **rnd.secagg,
                    "client_ids": ids,
                    "threshold": threshold,
                    "neighbours": neighbours,
                }

            return self._set_phase(task, rnd, "advertise", now, spec, secagg_of=cohort)
        if phase == "advertise":
            done = [p for p in live if p.advert is not None]
            if len(done) < len(live) and not due:
                return False
            threshold = int(rnd.secagg["threshold"])
            if len(done) - 1 < threshold or len(done) < least:
                return self._fail_round(
                    task, rnd, "failed", f"{len(done)} devices advertised keys", now
                )
            return self._set_phase(task, rnd, "share", now, spec)
        if phase == "share":
            expected = [p for p in live if p.advert is not None]
            done = [p for p in expected if p.shared]
            if len(done) < len(expected) and not due:
                return False
            if len(done) < max(int(rnd.secagg["threshold"]), least):
                return self._fail_round(task, rnd, "failed", f"{len(done)} devices shared", now)
            return self._set_phase(task, rnd, "masked_input", now, spec)
        if phase == "masked_input":
            expected = [p for p in live if p.shared]
            done = [p for p in parts if p.shared and p.payload is not None]
            if len(done) < len(expected) and not due:
                return False
            if len(done) < max(int(rnd.secagg["threshold"]), least):
                return self._fail_round(
                    task,
                    rnd,
                    "failed" if done else "no_model",
                    f"{len(done)} masked inputs; the threshold is {rnd.secagg['threshold']}, "
                    f"min_reports {spec.min_reports} and a SecAgg sum needs at least "
                    f"{SECAGG_MIN_SUM}",
                    now,
                )

            def split(fresh: Sequence[Any]) -> dict[str, Any]:
                survivors = sorted(p.client_id for p in fresh if p.shared and p.payload is not None)
                dropped = sorted(p.client_id for p in fresh if p.shared and p.payload is None)
                return {**rnd.secagg, "survivors": survivors, "dropped": dropped}

            return self._set_phase(task, rnd, "unmask", now, spec, secagg_of=split)
        if phase == "unmask":
            alive = set(rnd.secagg.get("survivors", []))
            asked = [p for p in parts if p.client_id in alive and p.state != "left"]
            if any(p.unmask is None for p in asked) and not due:
                return False
            return self._aggregate_secagg(task, rnd, spec, now)
        return False

    def _set_phase(
        self,
        task: Any,
        rnd: Any,
        phase: str,
        now: float,
        spec: TaskSpec,
        *,
        secagg_of: Callable[[Sequence[Any]], dict[str, Any]] | None = None,
    ) -> bool:
        """Move the round from ``rnd.phase`` to ``phase`` in one write transaction.

        The round's row is locked first and ``secagg_of`` (what the next phase needs: the
        cohort, or survivors and dropped) is computed from the participants read *under
        that lock*: a message that landed after ``_advance_once`` read the round (its
        request locks the same row) is either seen here or refused for the new phase,
        never stored yet left out of the phase's lists.
        """
        values: dict[str, Any] = {
            "phase": phase,
            "phase_deadline": min(rnd.deadline, now + spec.secagg_step_timeout_s),
        }
        with self._write("advance the SecAgg phase") as conn:
            locked = round_row(conn, task.id, rnd.number, lock=True)
            if locked.state != "open" or locked.phase != rnd.phase:
                return False
            if secagg_of is not None:
                values["secagg"] = secagg_of(participants(conn, task.id, rnd.number))
            moved = conn.execute(
                sa.update(ROUNDS)
                .where(
                    ROUNDS.c.task_id == task.id,
                    ROUNDS.c.number == rnd.number,
                    ROUNDS.c.state == "open",
                    ROUNDS.c.phase == rnd.phase,
                )
                .values(**values)
            ).rowcount
        self._changed(task.app_id)
        return bool(moved)

    # -- aggregation -------------------------------------------------------------------------

    def _rng(self, spec: TaskSpec, number: int) -> np.random.Generator:
        if spec.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([spec.seed, number])

    def _aggregate_plain(
        self, task: Any, rnd: Any, reported: Sequence[Any], spec: TaskSpec, now: float
    ) -> bool:
        updates = [
            np.frombuffer(bytes(p.payload), dtype="<f4").astype(np.float64) for p in reported
        ]
        cap = spec.max_sample_weight
        counts = [int(p.num_samples) if cap is None else min(cap, p.num_samples) for p in reported]
        clip = float(rnd.clip_norm)
        outcome: dict[str, Any] = {
            "reports": len(updates),
            "norms": norm_summary(updates),
            "aggregator": spec.aggregator,
        }
        next_clip = clip
        if spec.dp:
            adaptive = (
                AdaptiveClipping(count_stddev=spec.count_stddev) if spec.adaptive_clipping else None
            )
            dp = DPFedAvg(clip, spec.noise_multiplier, spec.clients_per_round, adaptive)
            told = [p.clipped for p in reported]
            result = dp.aggregate(updates, self._rng(spec, rnd.number), told)
            step = result.update
            next_clip = result.next_clip_norm
            outcome["clipped"] = result.clipped_count
        else:
            clipped = [clip_update(u, clip)[0] for u in updates]
            if spec.aggregator == "trimmed_mean":
                step = trimmed_mean(clipped, spec.trim_fraction)
            elif spec.aggregator == "median":
                step = coordinate_median(clipped)
            else:
                step = fedavg(clipped, counts)
        consumed = [(rnd.number, str(p.device_id)) for p in reported]
        return self._apply(
            task, rnd, spec, step, len(updates), next_clip, outcome, now, consumed=consumed
        )

    def _aggregate_secagg(self, task: Any, rnd: Any, spec: TaskSpec, now: float) -> bool:
        with self._read("read the SecAgg round") as conn:
            try:
                server = self._replay(conn, task, rnd, upto="unmask")
                total, survivors = server.aggregate_sum()
            except (SecAggAborted, InvalidInput) as exc:
                return self._fail_round(task, rnd, "failed", f"secagg_aborted: {exc}", now)
        if spec.dp:
            noise = self._rng(spec, rnd.number).normal(
                0.0, spec.noise_multiplier * rnd.clip_norm, size=total.shape
            )
            step = (total + noise) / spec.clients_per_round
        else:
            step = total / survivors
        outcome = {
            "reports": survivors,
            "survivors": list(rnd.secagg.get("survivors", [])),
            "dropped": list(rnd.secagg.get("dropped", [])),
            "aggregator": "fedavg (secagg sum)",
        }
        return self._apply(task, rnd, spec, step, survivors, float(rnd.clip_norm), outcome, now)

    def _epsilon(self, task: Any, spec: TaskSpec, rounds: int) -> float | None:
        q = spec.sampling_probability
        if not spec.dp or q is None:
            return None
        accountant = self._accountants.get(task.id)
        if accountant is None:
            accountant = PrivacyAccountant(spec.noise_multiplier, q, spec.delta)
            self._accountants[task.id] = accountant
        accountant.rounds = rounds
        return float(accountant.spent().epsilon)

    def _apply(
        self,
        task: Any,
        rnd: Any,
        spec: TaskSpec,
        step: np.ndarray,
        clients: int,
        next_clip: float,
        outcome: dict[str, Any],
        now: float,
        *,
        consumed: Sequence[tuple[int, str]] | None = None,
    ) -> bool:
        """Move the global head by ``step``; record the round; open the next or finish.

        ``consumed``: (round, device) of every plain update this step used (None for a
        SecAgg sum, fixed by its survivors list). Under the round's lock they must still be
        all the buffered updates, or the write is rolled back (``_Stale``) and the round
        decided again: an update accepted after the read is aggregated, never dropped.
        """
        weights = np.frombuffer(bytes(task.weights), dtype="<f4").astype(np.float64)
        new = (weights + step).astype("<f4")
        if not np.all(np.isfinite(new)):
            return self._fail_round(task, rnd, "failed", "the aggregate is not finite", now)
        new_bytes = new.tobytes()
        rounds_done = task.rounds_done + 1
        epsilon = self._epsilon(task, spec, rounds_done)
        outcome = {
            **outcome,
            "step_norm": float(np.linalg.norm(step)),
            "epsilon": epsilon,
            "delta": spec.delta if spec.dp else None,
            "next_clip_norm": next_clip,
        }
        finished = rounds_done >= spec.rounds
        text = f"round {rnd.number} aggregated {clients} updates" + (
            f"; ε = {epsilon:.3f} at δ = {spec.delta:g}" if epsilon is not None else ""
        )
        next_round = None
        if not finished:
            next_round = self._round_values(
                task.id,
                task.app_id,
                task.model,
                spec,
                task.head,
                new_bytes,
                rnd.number + 1,
                now,
                clip_norm=next_clip,
            )
        with self._write("apply the round") as conn:
            if consumed is not None:
                self._check_unchanged(conn, rnd, spec, consumed)
            if not self._close_round(conn, task.id, rnd.number, "aggregated", outcome, now):
                return False
            values: dict[str, Any] = {
                "weights": new_bytes,
                "rounds_done": rounds_done,
                "clients_total": task.clients_total + clients,
                "clip_norm": next_clip,
                "epsilon": epsilon,
                "updated_at": self._dt(now),
                "log": with_log_line(task.log, now, text),
            }
            if finished:
                values["state"] = "finishing"
            else:
                assert next_round is not None
                values["round"] = rnd.number + 1
                conn.execute(sa.insert(ROUNDS).values(**next_round))
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task.id).values(**values))
        self._changed(task.app_id)
        logger.info("federated task %s: %s", task.id, text)
        return True

    def _check_unchanged(
        self, conn: sa.Connection, rnd: Any, spec: TaskSpec, read: Sequence[tuple[int, str]]
    ) -> None:
        """Lock the round; raise ``_Stale`` when its buffered plain updates are not ``read``.

        Buffered: reported with a payload, in the round (FedBuff: or up to
        ``fedbuff_max_staleness`` rounds older). An upload locks the same round row, so
        after this lock none can land until the caller's transaction ends.
        """
        round_row(conn, rnd.task_id, rnd.number, lock=True)
        oldest = rnd.number - (spec.fedbuff_max_staleness if spec.fedbuff else 0)
        rows = conn.execute(
            sa.select(PARTS.c.round, PARTS.c.device_id).where(
                PARTS.c.task_id == rnd.task_id,
                PARTS.c.round >= oldest,
                PARTS.c.round <= rnd.number,
                PARTS.c.state == "reported",
                PARTS.c.payload.is_not(None),
            )
        ).all()
        if {(int(r.round), str(r.device_id)) for r in rows} != set(read):
            raise _Stale

    def _fail_round(
        self,
        task: Any,
        rnd: Any,
        state: str,
        reason: str,
        now: float,
        *,
        read: Sequence[tuple[int, str]] | None = None,
    ) -> bool:
        """Close the round without a model; retry with a new round or fail the task.

        ``read``: the buffered plain updates the decision saw (see ``_check_unchanged``).
        """
        spec = spec_of(task.config)
        retries = task.retries_used + 1
        give_up = retries > spec.max_retries
        next_round = None
        if not give_up:
            next_round = self._round_values(
                task.id,
                task.app_id,
                task.model,
                spec,
                task.head,
                bytes(task.weights),
                rnd.number + 1,
                now,
                clip_norm=float(task.clip_norm),
            )
        text = f"round {rnd.number} closed without a model ({state}): {reason}"
        with self._write("close the round") as conn:
            if read is not None:
                self._check_unchanged(conn, rnd, spec, read)
            closed = self._close_round(
                conn, task.id, rnd.number, state, {"reason": reason, "reports": rnd.reports}, now
            )
            if not closed:
                return False
            values: dict[str, Any] = {
                "retries_used": retries,
                "updated_at": self._dt(now),
                "log": with_log_line(task.log, now, text),
            }
            if give_up:
                values.update(
                    state="failed",
                    active_key=None,
                    finished_at=self._dt(now),
                    error=f"{retries} rounds without a model (max_retries {spec.max_retries}); "
                    f"last: {reason}",
                )
            else:
                assert next_round is not None
                values["round"] = rnd.number + 1
                conn.execute(sa.insert(ROUNDS).values(**next_round))
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task.id).values(**values))
        self._changed(task.app_id)
        logger.info("federated task %s: %s", task.id, text)
        return True

    def _close_round(
        self,
        conn: sa.Connection,
        task_id: str,
        number: int,
        state: str,
        outcome: dict[str, Any],
        now: float,
    ) -> bool:
        """Mark the round ``state`` (only if still open) and delete what devices sent.

        Deleted for this round *and every earlier one*: a FedBuff update of an older round
        that no step consumed (it came too late for its window, or the round failed, the
        task ended or was cancelled) is not kept either.
        """
        moved = conn.execute(
            sa.update(ROUNDS)
            .where(ROUNDS.c.task_id == task_id, ROUNDS.c.number == number, ROUNDS.c.state == "open")
            .values(
                state=state,
                phase="done" if state == "aggregated" else "failed",
                outcome=outcome,
                closed_at=now,
            )
        ).rowcount
        if not moved:
            return False
        conn.execute(
            sa.update(PARTS)
            .where(PARTS.c.task_id == task_id, PARTS.c.round <= number)
            .values(payload=None, unmask=None)
        )
        conn.execute(sa.delete(SHARES).where(SHARES.c.task_id == task_id, SHARES.c.round <= number))
        return True

    # -- the result --------------------------------------------------------------------------

    def _ship(self, task: Any, now: float) -> None:
        """Push the final head on the frozen backbone as a candidate version (once)."""
        spec = spec_of(task.config)
        version = self._existing_result(task)
        try:
            if version is None:
                version = self._push_result(task, spec)
        except PocketMLError as error:
            text = f"could not push the result: {error}"
            with self._write("fail the federated task") as conn:
                conn.execute(
                    sa.update(TASKS)
                    .where(TASKS.c.id == task.id, TASKS.c.state == "finishing")
                    .values(
                        state="failed",
                        active_key=None,
                        error=text[:4000],
                        finished_at=self._dt(now),
                        updated_at=self._dt(now),
                        log=with_log_line(task.log, now, text),
                    )
                )
            return
        finally:
            shutil.rmtree(self.work_dir / task.id, ignore_errors=True)
        log = with_log_line(task.log, now, f"pushed candidate v{version}")
        rollout_id = None
        if spec.rollout is not None and self.start_rollout is not None:
            try:
                rollout_id = self.start_rollout(
                    task.app_id, task.model, version, dict(spec.rollout), f"federated:{task.id}"
                )
                log = with_log_line(log, now, f"staged rollout {rollout_id} of v{version} started")
            except PocketMLError as error:  # the candidate stays, for a rollout by hand
                log = with_log_line(log, now, f"staged rollout not started: {error}")
        with self._write("finish the federated task") as conn:
            conn.execute(
                sa.update(TASKS)
                .where(TASKS.c.id == task.id, TASKS.c.state == "finishing")
                .values(
                    state="succeeded",
                    active_key=None,
                    result_version=version,
                    rollout_id=rollout_id,
                    finished_at=self._dt(now),
                    updated_at=self._dt(now),
                    log=log,
                )
            )
        self._changed(task.app_id)

    def _existing_result(self, task: Any) -> int | None:
        """The version a previous attempt pushed for this task (a restart mid-push)."""
        page = self.registry.list_versions(task.app_id, task.model, limit=50)
        for info in page.items:
            record = (info.run_record or {}).get("federated") or {}
            if record.get("task_id") == task.id:
                return int(info.version)
        return None

    def _push_result(self, task: Any, spec: TaskSpec) -> int:
        base = self.registry.get_version(task.app_id, task.model, task.base_version)
        model = self.registry.get_model(task.app_id, task.model)
        where = f"version {task.base_version} of {task.model!r}"
        head_spec = HeadSpec(
            embedding_output=task.head["embedding_output"],
            weight=task.head["weight"],
            bias=task.head["bias"],
            weight_layout=task.head["weight_layout"],
        )
        vector = np.frombuffer(bytes(task.weights), dtype="<f4").astype(np.float64)
        dim, classes = int(task.head["dim"]), int(task.head["classes"])
        head = Head(np.zeros((dim, classes)), np.zeros(classes)).with_vector(vector)
        build = self.work_dir / task.id / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        variants = []
        for variant in base.variants:
            if variant.format != "onnx" or variant.precision != "fp32":
                continue
            source = self.extract(task.app_id, variant, self.work_dir / "models")
            target = build / f"{variant.name}.onnx"
            digest = write_head(source, target, head_spec, head)
            variants.append(
                {
                    "name": variant.name,
                    "file": target.name,
                    "format": "onnx",
                    "precision": "fp32",
                    "role": variant.role,
                    "sha256": digest,
                    "compatibility": variant.compatibility,
                }
            )
        if not variants:
            raise InvalidInput(f"{where} has no fp32 ONNX variant to carry the trained head.")
        lineage = {
            "task_id": task.id,
            "base_version": task.base_version,
            "rounds": task.rounds_done,
            "clients": task.clients_total,
            "epsilon": task.epsilon,
            "delta": spec.delta if spec.dp else None,
            "noise_multiplier": spec.noise_multiplier,
            "clip_norm": spec.clip_norm,
            "aggregator": "fedbuff" if spec.fedbuff else spec.aggregator,
            "secagg": spec.secagg,
        }
        write_json(build / "schema.json", model.schema)
        card = (
            f"{base.card}\n\n## Federated fine-tuning\n\nThe classifier head of v"
            f"{task.base_version} trained on devices by federated task {task.id}: "
            f"{task.rounds_done} rounds, {task.clients_total} client updates, aggregator "
            f"{'fedbuff' if spec.fedbuff else spec.aggregator}"
            + (", secure aggregation" if spec.secagg else "")
            + (
                f", DP-FedAvg with noise multiplier {spec.noise_multiplier:g} "
                f"(ε = {task.epsilon:.3f}, δ = {spec.delta:g})."
                if spec.dp and task.epsilon is not None
                else " (no differential privacy)."
            )
        )
        (build / "card.md").write_text(card, encoding="utf-8")
        write_json(
            build / "build.json",
            {
                "format_version": 1,
                "model": task.model,
                "schema": "schema.json",
                "card": "card.md",
                "dataset_fingerprint": None,
                "source_framework": base.source_framework,
                "params": dict(base.params),
                "metrics": {},
                "variants": variants,
            },
        )
        meta = {"parent_version": task.base_version, "run_record": {"federated": lineage}}
        return int(self.pusher(task.app_id, task.model, build, meta))


def _repeated_upload(
    conn: sa.Connection,
    task_id: str,
    number: int,
    device_id: str,
    idempotency_key: str,
    digest: str,
) -> UploadAnswer | None:
    """The answer to an upload the device made already (a retry: 200 duplicate), or None.

    Raises:
        FlAlreadyReported: the device reported with another key or other bytes.
    """
    mine = participant(conn, task_id, number, device_id)
    if mine is None or mine.idempotency_key is None:
        return None
    if mine.idempotency_key == idempotency_key and mine.update_sha256 == digest:
        return UploadAnswer(True, True, number, round_row(conn, task_id, number).reports)
    raise FlAlreadyReported(
        f"the device reported for round {number} already (another Idempotency-Key or "
        "other bytes); one update per device and round."
    )


def _lock_upload_round(
    conn: sa.Connection, app_id: str, task_id: str, number: int
) -> tuple[Any, Any, float]:
    """The task, the round to count an upload in (locked) and the clip norm it is held to.

    A FedBuff task takes updates for a round up to ``fedbuff_max_staleness`` rounds old:
    they count in the open round; every other task only for the open round itself.
    """
    task = task_row(conn, app_id, task_id)
    spec = spec_of(task.config)
    lag = task.round - number
    if spec.fedbuff and task.state == "running" and 0 < lag <= spec.fedbuff_max_staleness:
        joined = round_row(conn, task_id, number)
        return task, round_row(conn, task_id, task.round, lock=True), float(joined.clip_norm)
    task, rnd = lock_open_round(conn, app_id, task_id, number)
    return task, rnd, float(rnd.clip_norm)


def _update_participant(
    conn: sa.Connection, task_id: str, round_number: int, device_id: str, **values: Any
) -> None:
    """Set columns of one device's participation in one round."""
    conn.execute(
        sa.update(PARTS)
        .where(
            PARTS.c.task_id == task_id,
            PARTS.c.round == round_number,
            PARTS.c.device_id == device_id,
        )
        .values(**values)
    )
