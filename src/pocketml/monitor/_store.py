"""The sketch store: every device's sketch merged into one row per version x group x hour.

Intake calls ``add_sketches(conn, app_id, additions)`` inside the transaction that stores
the telemetry batch, so a batch and its sketches commit together and a retried batch
(refused by the batch's idempotency key) adds nothing twice. Reports call
``read_sketches`` and merge the hourly rows of their window.

Why one row per (model, version, device class, app version, hour) and not per device:
the drift tests need the fleet's counts per group, never one device's, so the server keeps
no per-device input statistics at all; 10,000 devices a day become 24 rows per group.

Merging is read-modify-write of an int64 blob. Concurrent intakes of the same key are
serialised by the row lock: PostgreSQL inserts a zero row if none exists (``ON CONFLICT DO
NOTHING``) and then locks it with ``SELECT ... FOR UPDATE``; SQLite's write transactions
(``BEGIN IMMEDIATE``) are serial already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from pocketml.db import utcnow
from pocketml.errors import InvalidInput
from pocketml.monitor._orm import SketchRow
from pocketml.sketch import Sketch

__all__ = [
    "WINDOW_S",
    "SketchAddition",
    "SketchKey",
    "StoredSketch",
    "add_sketches",
    "read_sketches",
    "window_of",
]

WINDOW_S = 3600
"""The store's time resolution: sketches are summed per hour (``window_of``)."""

_TABLE: sa.Table = SketchRow.__table__  # type: ignore[assignment]
_KEY_COLUMNS = ("model", "version", "device_class", "app_version", "window_start")
_DTYPE = np.dtype("<i8")


def window_of(ts: float, width_s: int = WINDOW_S) -> int:
    """The start (unix seconds) of the ``width_s`` window holding ``ts``."""
    if width_s <= 0:
        raise InvalidInput(f"width_s must be positive; got {width_s}.")
    return int(ts // width_s) * width_s


@dataclass(frozen=True)
class SketchKey:
    """Where a sketch is merged: one version, one device group, one hour.

    ``device_class`` and ``app_version`` are ``""`` when the device sent none.
    """

    model: str
    version: int
    device_class: str
    app_version: str
    window_start: int


@dataclass(frozen=True)
class SketchAddition:
    """One device event's sketch for ``key``, with the per-bin variance of its DP noise."""

    key: SketchKey
    sketch: Sketch
    noise_variance: float = 0.0


@dataclass(frozen=True, eq=False)
class StoredSketch:
    """A merged row: ``n`` rows, counts in the profile's layout order (int64; may be
    negative when noisy), the summed per-bin noise variance and the events merged in."""

    key: SketchKey
    n: int
    counts: npt.NDArray[np.int64]
    noise_variance: float
    events: int


@dataclass
class _Pending:
    n: int
    counts: npt.NDArray[np.int64]
    noise_variance: float
    events: int


def add_sketches(conn: sa.Connection, app_id: str, additions: Sequence[SketchAddition]) -> None:
    """Add every sketch to its key's row, inside the caller's (write) transaction.

    Additions for the same key are summed first, so a batch of many events costs one
    read-modify-write per key.

    Raises:
        InvalidInput: two sketches for one key have different layouts (the stored row
            belongs to another profile: a broken caller, not a device's mistake).
    """
    pending: dict[SketchKey, _Pending] = {}
    for add in additions:
        seen = pending.get(add.key)
        if seen is None:
            pending[add.key] = _Pending(
                add.sketch.n, add.sketch.counts.astype(np.int64), add.noise_variance, 1
            )
        else:
            _check_size(seen.counts, add.sketch.counts, add.key)
            seen.n += add.sketch.n
            seen.counts = seen.counts + add.sketch.counts
            seen.noise_variance += add.noise_variance
            seen.events += 1
    now = utcnow()
    postgres = conn.dialect.name == "postgresql"
    for key, total in sorted(pending.items(), key=lambda kv: _sort_key(kv[0])):
        where = _where(app_id, key)
        if postgres:
            conn.execute(
                postgresql.insert(_TABLE)
                .values(
                    app_id=app_id,
                    **_key_values(key),
                    n=0,
                    counts=np.zeros(total.counts.size, _DTYPE).tobytes(),
                    noise_variance=0.0,
                    events=0,
                    updated_at=now,
                )
                .on_conflict_do_nothing(index_elements=["app_id", *_KEY_COLUMNS])
            )
        select = sa.select(_TABLE.c.id, _TABLE.c.counts).where(where)
        row = conn.execute(select.with_for_update() if postgres else select).first()
        if row is None:  # SQLite: the first sketch of this key (the write lock is ours)
            conn.execute(
                sqlite.insert(_TABLE).values(
                    app_id=app_id,
                    **_key_values(key),
                    n=total.n,
                    counts=total.counts.astype(_DTYPE).tobytes(),
                    noise_variance=total.noise_variance,
                    events=total.events,
                    updated_at=now,
                )
            )
            continue
        stored = np.frombuffer(row.counts, dtype=_DTYPE)
        _check_size(stored, total.counts, key)
        conn.execute(
            sa.update(_TABLE)
            .where(_TABLE.c.id == row.id)
            .values(
                n=_TABLE.c.n + total.n,
                counts=(stored + total.counts).astype(_DTYPE).tobytes(),
                noise_variance=_TABLE.c.noise_variance + total.noise_variance,
                events=_TABLE.c.events + total.events,
                updated_at=now,
            )
        )


def read_sketches(
    bind: sa.Engine | sa.Connection,
    app_id: str,
    model: str,
    *,
    since: int,
    until: int,
    version: int | None = None,
    device_class: str | None = None,
    app_version: str | None = None,
) -> list[StoredSketch]:
    """The stored rows of ``model`` with ``since <= window_start < until``, oldest first.

    ``version``, ``device_class`` and ``app_version`` filter when given (``""`` selects the
    rows of devices that sent none).
    """
    query = sa.select(_TABLE).where(
        _TABLE.c.app_id == app_id,
        _TABLE.c.model == model,
        _TABLE.c.window_start >= since,
        _TABLE.c.window_start < until,
    )
    for column, value in (
        ("version", version),
        ("device_class", device_class),
        ("app_version", app_version),
    ):
        if value is not None:
            query = query.where(_TABLE.c[column] == value)
    query = query.order_by(_TABLE.c.window_start, _TABLE.c.id)
    if isinstance(bind, sa.Engine):
        with bind.connect() as conn:
            rows = conn.execute(query).all()
    else:
        rows = bind.execute(query).all()
    return [
        StoredSketch(
            key=SketchKey(
                row.model, row.version, row.device_class, row.app_version, row.window_start
            ),
            n=int(row.n),
            counts=np.frombuffer(row.counts, dtype=_DTYPE).astype(np.int64),
            noise_variance=float(row.noise_variance),
            events=int(row.events),
        )
        for row in rows
    ]


def _key_values(key: SketchKey) -> dict[str, object]:
    return {column: getattr(key, column) for column in _KEY_COLUMNS}


def _where(app_id: str, key: SketchKey) -> sa.ColumnElement[bool]:
    return sa.and_(
        _TABLE.c.app_id == app_id,
        *(_TABLE.c[column] == getattr(key, column) for column in _KEY_COLUMNS),
    )


def _sort_key(key: SketchKey) -> tuple[object, ...]:
    # One lock order for every transaction: two intakes never wait on each other in a cycle.
    return (key.model, key.version, key.device_class, key.app_version, key.window_start)


def _check_size(
    stored: npt.NDArray[np.int64], adding: npt.NDArray[np.int64], key: SketchKey
) -> None:
    if stored.size != adding.size:
        raise InvalidInput(
            f"a sketch for {key.model} v{key.version} has {adding.size} bins but the stored "
            f"ones have {stored.size}: both must use the version's profile layout."
        )
