"""Row helpers of the federated service: the tables, reading and locking rows, turning
them into values, and the small encodings of the wire (base64, canonical JSON, the
sampling coin, the plain update's checks). Rows never leave the ``pocketml.federated``
package."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import sqlalchemy as sa

from pocketml.errors import InvalidInput, NotFound, ValidationFailed
from pocketml.federated._orm import LeaseRow, ParticipantRow, RoundRow, ShareRow, TaskRow
from pocketml.federated._spec import TaskSpec, parse_task_spec
from pocketml.federated._validate import UpdateRejectReason, validate_update
from pocketml.federated._values import RoundInfo, TaskInfo
from pocketml.fl import FixedPoint, KeyAdvertisement, SecAggConfig, Share, UnmaskResponse
from pocketml.protocol import (
    FlNormTooLarge,
    FlNotFinite,
    FlRoundClosed,
    FlSecAggInvalid,
    FlTaskClosed,
    FlWrongRound,
    FlWrongShape,
)

__all__ = [
    "ACTIVE",
    "LEASES",
    "MAX_LOG",
    "NORM_SLACK",
    "PARTS",
    "REJECTIONS",
    "ROUNDS",
    "SHARES",
    "TASKS",
    "advert",
    "b64",
    "base_variant",
    "canonical",
    "check_plain_update",
    "client_key",
    "coin",
    "forget_device_rows",
    "lock_open_round",
    "lock_task",
    "norm_summary",
    "participant",
    "participants",
    "pending_count",
    "round_info",
    "round_row",
    "secagg_config",
    "spec_of",
    "task_info",
    "task_row",
    "unb64",
    "unmask_response",
    "values_count",
    "with_log_line",
]

TASKS = cast(sa.Table, TaskRow.__table__)
ROUNDS = cast(sa.Table, RoundRow.__table__)
PARTS = cast(sa.Table, ParticipantRow.__table__)
SHARES = cast(sa.Table, ShareRow.__table__)
LEASES = cast(sa.Table, LeaseRow.__table__)

ACTIVE = ("running", "finishing")
NORM_SLACK = 1.0001  # float32 rounding of a vector clipped to exactly C
MAX_LOG = 200


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise FlSecAggInvalid(f"field '{name}' must be a base64 string; got {type(text).__name__}")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise FlSecAggInvalid(f"field '{name}' is not valid base64") from exc
    if size is not None and len(data) != size:
        raise FlSecAggInvalid(f"field '{name}' must decode to {size} bytes; got {len(data)}")
    return data


def client_key(key: Any, name: str) -> int:
    """A client id used as a JSON object key ("7")."""
    if not isinstance(key, str) or not key.isdigit() or not 1 <= int(key) < 2**32:
        raise FlSecAggInvalid(f"field '{name}': keys must be client ids (1..2^32-1); got {key!r}")
    return int(key)


def canonical(value: Any) -> bytes:

    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def coin(task_id: str, number: int, device_id: str) -> float:
    """A uniform draw in [0, 1) fixed by (task, round, device): asking again gives the same."""
    digest = hashlib.sha256(f"{task_id}|{number}|{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def spec_of(config: Mapping[str, Any]) -> TaskSpec:
    return parse_task_spec({k: v for k, v in config.items()})


def values_count(head: Mapping[str, Any]) -> int:
    return int(head["dim"]) * int(head["classes"]) + int(head["classes"])


def with_log_line(log: Sequence[str] | None, now: float, text: str) -> list[str]:
    lines = [*(log or []), f"{datetime.fromtimestamp(now, UTC).isoformat()} {text}"]
    return lines[-MAX_LOG:]


def base_variant(version: Any, where: str) -> Any:
    for role in ("device", "cloud"):
        for variant in version.variants:
            if variant.format == "onnx" and variant.precision == "fp32" and variant.role == role:
                return variant
    raise InvalidInput(
        f"{where} has no fp32 ONNX variant: the head's weights are read from it and the "
        "result is written into it (add onnx to convert.targets)."
    )


def task_row(conn: sa.Connection, app_id: str, task_id: str, *, lock: bool = False) -> Any:
    query = sa.select(TASKS).where(TASKS.c.id == task_id, TASKS.c.app_id == app_id)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no federated task {task_id!r} in this app.")
    return row


def lock_task(conn: sa.Connection, app_id: str, task_id: str) -> Any:
    return task_row(conn, app_id, task_id, lock=True)


def round_row(conn: sa.Connection, task_id: str, number: int, *, lock: bool = False) -> Any:
    query = sa.select(ROUNDS).where(ROUNDS.c.task_id == task_id, ROUNDS.c.number == number)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"task {task_id} has no round {number}.")
    return row


def lock_open_round(conn: sa.Connection, app_id: str, task_id: str, number: int) -> tuple[Any, Any]:
    """The task and its open round ``number``, the round row locked; else the 409 why."""
    task = task_row(conn, app_id, task_id)
    if task.state not in ACTIVE:
        raise FlTaskClosed(f"task {task_id} is {task.state}; it takes no more devices.")
    if number != task.round:
        raise FlWrongRound(
            f"field 'round': round {number} is not the open round of task {task_id} "
            f"(round {task.round} is)."
        )
    rnd = round_row(conn, task_id, number, lock=True)
    if rnd.state != "open" or task.state != "running":
        raise FlRoundClosed(f"round {number} of task {task_id} is over ({rnd.state}).")
    return task, rnd


def participant(conn: sa.Connection, task_id: str, number: int, device_id: str) -> Any:
    return conn.execute(
        sa.select(PARTS).where(
            PARTS.c.task_id == task_id, PARTS.c.round == number, PARTS.c.device_id == device_id
        )
    ).first()


def forget_device_rows(conn: sa.Connection, app_id: str, device_id: str) -> int:
    """Delete ``device_id``'s participant rows in every federated task of ``app_id`` (its
    client ids, conditions, idempotency keys, update hashes, any payload still held).

    Runs in the caller's transaction (the loop's "forget this device"). A round still open
    loses the device: a plain round aggregates without it; a SecAgg round that had its keys
    can no longer be unmasked and fails (never a wrong aggregate), then is retried.

    Returns:
        The rows deleted.
    """
    tasks = sa.select(TASKS.c.id).where(TASKS.c.app_id == app_id)
    result = conn.execute(
        sa.delete(PARTS).where(PARTS.c.device_id == device_id, PARTS.c.task_id.in_(tasks))
    )
    return int(result.rowcount)


def pending_count(conn: sa.Connection, task_id: str, number: int) -> int:
    """Selected devices of the round that neither reported nor left."""
    query = sa.select(sa.func.count()).where(
        PARTS.c.task_id == task_id,
        PARTS.c.round == number,
        PARTS.c.state.not_in(("reported", "left")),
    )
    return int(conn.execute(query).scalar_one())


def participants(conn: sa.Connection, task_id: str, number: int) -> list[Any]:
    return list(
        conn.execute(
            sa.select(PARTS).where(PARTS.c.task_id == task_id, PARTS.c.round == number)
        ).all()
    )


def secagg_config(task: Any, rnd: Any) -> SecAggConfig:
    s = rnd.secagg
    return SecAggConfig(
        round_id=s["secagg_round_id"],
        client_ids=tuple(int(i) for i in s["client_ids"]),
        threshold=int(s["threshold"]),
        encoding=FixedPoint(int(s["bits"]), float(rnd.clip_norm), int(s["max_clients"])),
        n_values=values_count(task.head),
        neighbours=s.get("neighbours"),
        graph_seed=base64.b64decode(s["graph_seed"]),
    )


def advert(client_id: int, keys: Mapping[str, str]) -> KeyAdvertisement:
    return KeyAdvertisement(
        int(client_id),
        base64.b64decode(keys["cipher_public"]),
        base64.b64decode(keys["mask_public"]),
        base64.b64decode(keys["seed_commitment"]),
    )


def unmask_response(client_id: int, parsed: Mapping[str, Mapping[str, str]]) -> UnmaskResponse:
    def shares(kind: str) -> dict[int, Share]:
        return {
            int(owner): Share(int(client_id), int.from_bytes(base64.b64decode(y), "big"))
            for owner, y in (parsed.get(kind) or {}).items()
        }

    return UnmaskResponse(int(client_id), shares("self_mask_shares"), shares("mask_key_shares"))


REJECTIONS: dict[UpdateRejectReason, type[ValidationFailed]] = {
    UpdateRejectReason.WRONG_SHAPE: FlWrongShape,
    UpdateRejectReason.NOT_FINITE: FlNotFinite,
    UpdateRejectReason.NORM_TOO_LARGE: FlNormTooLarge,
}


def check_plain_update(
    task_id: str, number: int, body: bytes, n_values: int, clip_norm: float
) -> None:
    """Raise the 422 of a bad float32 update (shape, NaN/Inf, norm) via ``validate_update``."""
    if len(body) % 4:
        raise FlWrongShape(
            f"field 'update': the body must be {n_values} float32 values ({4 * n_values} "
            f"bytes); got {len(body)} bytes."
        )
    update = np.frombuffer(body, dtype="<f4")
    rejection = validate_update(
        update,
        task_id=task_id,
        round_id=str(number),
        client_id="device",
        expected_task_id=task_id,
        expected_round_id=str(number),
        selected=("device",),
        expected_shape=(n_values,),
        max_norm=clip_norm * NORM_SLACK,
    )
    if rejection is not None:
        error = REJECTIONS.get(rejection.reason, FlWrongShape)
        extra = (
            " Clip the update to the round's clip_norm first." if error is FlNormTooLarge else ""
        )
        raise error(f"field '{rejection.field}': {rejection.message}.{extra}")


def norm_summary(updates: Sequence[np.ndarray]) -> dict[str, float]:
    norms = [float(np.linalg.norm(u)) for u in updates]
    return {"min": min(norms), "median": float(np.median(norms)), "max": max(norms)}


def task_info(row: Any) -> TaskInfo:
    config = dict(row.config)
    return TaskInfo(
        id=row.id,
        app_id=row.app_id,
        model=row.model,
        base_version=row.base_version,
        state=row.state,
        spec=config,
        round=row.round,
        rounds_done=row.rounds_done,
        retries_used=row.retries_used,
        clients_total=row.clients_total,
        clip_norm=row.clip_norm,
        epsilon=row.epsilon,
        delta=config.get("delta") if (config.get("noise_multiplier") or 0) > 0 else None,
        result_version=row.result_version,
        rollout_id=row.rollout_id,
        error=row.error,
        log=list(row.log or []),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def round_info(row: Any) -> RoundInfo:
    return RoundInfo(
        number=row.number,
        state=row.state,
        phase=row.phase,
        opened_at=row.opened_at,
        join_until=row.join_until,
        deadline=row.deadline,
        selected=row.selected,
        reports=row.reports,
        clip_norm=row.clip_norm,
        outcome=row.outcome,
        closed_at=row.closed_at,
    )
