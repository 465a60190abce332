"""TelemetryStore: batches, chunks and feedback on the registry's database engine.

Intake is one transaction: insert the batch row with ``ON CONFLICT DO NOTHING`` (the
unique (app, batch_id) constraint decides duplicates, also between replicas), then one
chunk row per model of the batch (events columnar in a blob, see ``_chunks.py``).
Feedback is an upsert on (app, prediction_id, device_id) where the newest ``ts`` wins:
a prediction id is unique per device, so feedback labels only its own device's
inference, however many devices use the same ids.

``events()`` is the one read path of metrics, guardrails and experiments: the chunks of
(app, model) overlapping [since, until), decoded through an LRU of immutable chunks,
filtered to the window (and versions), with each event's label feedback joined on
(device, prediction id) at query time (so new feedback always shows).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from pocketml.db import WRITE, translate_errors
from pocketml.telemetry._chunks import ChunkCache, decode_payload, draft_chunks
from pocketml.telemetry._fleet import FLEET, device_table
from pocketml.telemetry._orm import (
    FeedbackRow,
    TelemetryBatchRow,
    TelemetryChunkRow,
    TelemetryRollupRow,
)
from pocketml.telemetry._rollup import DAY, HOUR, Labelled, Partial, summarise
from pocketml.telemetry._types import EventRows, Feedback

__all__ = ["CHUNK_ID_LOCK", "TelemetryStore"]

_BATCHES: sa.Table = TelemetryBatchRow.__table__  # type: ignore[assignment]
_CHUNKS: sa.Table = TelemetryChunkRow.__table__  # type: ignore[assignment]
_FEEDBACK: sa.Table = FeedbackRow.__table__  # type: ignore[assignment]
_ROLLUPS: sa.Table = TelemetryRollupRow.__table__  # type: ignore[assignment]
# The registry's model names, by table name only: telemetry imports no registry module.
_MODELS = sa.table("models", sa.column("app_id"), sa.column("name"))
_FEEDBACK_KEY = ["app_id", "prediction_id", "device_id"]
_KEY_SEPARATOR = "\x1f"  # never in a device id (ID_PATTERN): device + sep + prediction id
_MEASURED = pa.array(["inference", "error"])
_IN_LIMIT = 500  # ids per IN (...) list
_FEEDBACK_PROBE_MAX = 20_000  # more prediction ids than this: read the app's feedback
# PostgreSQL advisory lock: intake holds it shared, the exporter takes it exclusively to
# choose a range, so every chunk id below the range's end is committed (see export.py).
CHUNK_ID_LOCK = 0x706D6C74  # "pmlt"
# The rollups of (app, model or the app's fleet) whose span overlaps [min_ts, max_ts]
# (spans are at most a day long, which bounds the index range).
_DELETE_ROLLUPS = _ROLLUPS.delete().where(
    _ROLLUPS.c.app_id == sa.bindparam("app_id"),
    _ROLLUPS.c.model.in_([sa.bindparam("model"), FLEET]),
    _ROLLUPS.c.start > sa.bindparam("day_before"),
    _ROLLUPS.c.start <= sa.bindparam("max_ts"),
    _ROLLUPS.c.start + _ROLLUPS.c.span_s > sa.bindparam("min_ts"),
)
ROLLUP_CLOCK_SKEW_S = 600.0
"""How far another replica's clock may run ahead: intake skips the rollup delete only for
events of hours that end later than its receive time plus this."""


def _insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT with ``on_conflict_do_*`` for the engine's dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


_EMPTY = Partial(
    keys=[],
    counters=np.zeros((0, 5), np.int64),
    confidence_sum=np.zeros(0),
    hist_group=np.zeros(0, np.int32),
    hist_bucket=np.zeros(0, np.int32),
    hist_count=np.zeros(0, np.int64),
)


def _ipc(table: pa.Table) -> bytes:
    """An Arrow table as an IPC stream (a fleet rollup's payload)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def read_ipc(payload: bytes) -> pa.Table:
    """The inverse of ``_ipc``."""
    return pa.ipc.open_stream(payload).read_all()


def _parts(values: Sequence[Any], size: int = _IN_LIMIT) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class TelemetryStore:
    """SQL storage of telemetry. Returns plain tuples/dataclasses, never rows.

    Args:
        engine: the registry's open engine.
        cache_events: how many decoded events the chunk LRU keeps.
        cache_rollup_bytes: how many payload bytes of decoded rollups the rollup LRU
            keeps (rollups are immutable: a rebuilt span gets a new id).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        cache_events: int = 2_000_000,
        cache_rollup_bytes: int = 128 * 2**20,
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.cache = ChunkCache(cache_events)
        # decoded rollups by (immutable) id -> (value, payload bytes); LRU by bytes
        self._rollup_cache: OrderedDict[int, tuple[Any, int]] = OrderedDict()
        self._rollup_cache_bytes = 0
        self._rollup_cache_limit = cache_rollup_bytes
        self._rollup_lock = threading.Lock()
        self._insert_batch = (
            _insert(self.dialect, _BATCHES)
            .on_conflict_do_nothing(index_elements=["app_id", "batch_id"])
            .returning(_BATCHES.c.id)
        )
        self._insert_chunk = sa.insert(_CHUNKS)
        # SQLite has one writer: concurrent intake threads would otherwise spin in its
        # busy handler (which sleeps); taking turns in-process is much faster.
        self._write_turn: AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )

    @contextmanager
    def _write(self, action: str) -> Iterator[sa.Connection]:
        with (
            translate_errors(action),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            yield conn

    def insert_batch(
        self,
        app_id: str,
        batch_id: str,
        device_id: str,
        context: dict[str, str | None],
        events: Sequence[Any],
        received: datetime,
        *,
        clock_offset_s: float = 0.0,
        event_count: int | None = None,
        on_commit_rows: Callable[[sa.Connection], None] | None = None,
    ) -> bool:
        """Store a batch and its chunks unless (app_id, batch_id) exists already.

        Args:
            events: validated events: mappings, or objects with the event fields as
                attributes (see ``draft_chunks``); their ``ts`` already corrected.
            clock_offset_s: seconds intake added to the device's timestamps (kept per
                chunk, so the device's own ts stays recoverable).
            event_count: the batch's events for the batch row, when more than
                ``events`` (events of kinds that are not rows, e.g. ``profile``).
            on_commit_rows: called with the open connection after the batch row and
                its chunks were written, inside the same transaction, and only for a
                batch not seen before (so a retried batch runs it once). Another
                service writes its rows of the batch here (the monitor merges the
                batch's sketches); an exception rolls the whole batch back.

        Returns:
            True when stored, False for a duplicate (nothing written).

        Raises:
            Unavailable: the database cannot be reached.
        """
        drafts = draft_chunks(events)  # encode outside the write turn
        shared = {
            "app_id": app_id,
            "batch_id": batch_id,
            "device_id": device_id,
            "platform": context.get("platform"),
            "device_class": context.get("device_class"),
            "app_version": context.get("app_version"),
            "received_at": received,
            "clock_offset_s": clock_offset_s,
        }
        chunks = [
            {
                **shared,
                "model": d.model,
                "event_count": d.event_count,
                "min_ts": d.min_ts,
                "max_ts": d.max_ts,
                "payload": d.payload,
            }
            for d in drafts
        ]
        batch = {
            "app_id": app_id,
            "batch_id": batch_id,
            "device_id": device_id,
            "event_count": len(events) if event_count is None else event_count,
            "received_at": received,
        }
        with self._write_turn, self._write("store a telemetry batch") as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock_shared({CHUNK_ID_LOCK})")
            if conn.execute(self._insert_batch, batch).first() is None:
                return False  # the batch was stored before
            if chunks:
                conn.execute(self._insert_chunk, chunks)
                self._invalidate(conn, app_id, drafts, received.timestamp())
            if on_commit_rows is not None:
                on_commit_rows(conn)
        return True

    @staticmethod
    def _invalidate(
        conn: sa.Connection, app_id: str, drafts: Sequence[Any], received: float
    ) -> None:
        """Delete the rollups of the spans the new chunks' events fall in (same transaction).

        One indexed range delete per model of the batch, skipped when every event is in
        an hour that ends after ``received`` + ``ROLLUP_CLOCK_SKEW_S``: a rollup is built
        only for a span that ended by the reader's clock, so none can hold these events
        (live traffic, the usual batch, pays nothing; late events pay one delete).
        """
        for draft in drafts:
            if math.floor(draft.min_ts / HOUR) * HOUR + HOUR > received + ROLLUP_CLOCK_SKEW_S:
                continue
            conn.execute(
                _DELETE_ROLLUPS,
                {
                    "app_id": app_id,
                    "model": draft.model,
                    "min_ts": draft.min_ts,
                    "max_ts": draft.max_ts,
                    "day_before": draft.min_ts - DAY,
                },
            )

    def upsert_feedback(self, app_id: str, feedback: Feedback, received: datetime) -> None:
        """Insert or replace the feedback of one prediction of one device (newest ``ts`` wins).

        Raises:
            Unavailable: the database cannot be reached.
        """
        values = {
            "app_id": app_id,
            "prediction_id": feedback.prediction_id,
            "device_id": feedback.device_id,
            "model": feedback.model,
            "version": feedback.version,
            "label": feedback.label,
            "thumbs": feedback.thumbs,
            "ts": feedback.ts,
            "received_at": received,
        }
        stmt = _insert(self.dialect, _FEEDBACK).values(**values)
        changed = {k: stmt.excluded[k] for k in values if k not in _FEEDBACK_KEY}
        stmt = stmt.on_conflict_do_update(
            index_elements=_FEEDBACK_KEY,
            set_=changed,
            where=_FEEDBACK.c.ts <= stmt.excluded.ts,
        )
        with self._write("store feedback") as conn:
            conn.execute(stmt)

    def known_models(self, app_id: str, names: Sequence[str]) -> set[str]:
        """The subset of ``names`` that are models of the app.

        Raises:
            Unavailable: the database cannot be reached.
        """
        found: set[str] = set()
        with translate_errors("read model names"), self.engine.connect() as conn:
            for part in _parts(sorted(set(names))):
                query = sa.select(_MODELS.c.name).where(
                    _MODELS.c.app_id == app_id, _MODELS.c.name.in_(part)
                )
                found.update(conn.scalars(query))
        return found

    def count_events(self, app_id: str) -> int:
        """How many events the app has stored (for tests and benchmarks)."""
        with translate_errors("count telemetry events"), self.engine.connect() as conn:
            return int(
                conn.scalar(
                    sa.select(sa.func.coalesce(sa.func.sum(_CHUNKS.c.event_count), 0)).where(
                        _CHUNKS.c.app_id == app_id
                    )
                )
                or 0
            )

    def events(
        self,
        app_id: str,
        model: str,
        since: float | None = None,
        until: float | None = None,
        versions: Sequence[int] | None = None,
    ) -> EventRows:
        """The inference and error events of one model in [since, until), with feedback.

        Args:
            app_id: the app.
            model: the model name.
            since: unix seconds, inclusive; None = from the start.
            until: unix seconds, exclusive; None = no end.
            versions: keep only events of these versions; None = every version.

        Returns:
            ``EventRows``: per event its version, device class, type, source, latency,
            confidence, label, and the label of the newest label feedback of the same
            device and prediction id (None without one).

        Raises:
            Unavailable: the database cannot be reached.
        """
        conditions = self._overlapping(app_id, model, since, until)
        listing = sa.select(_CHUNKS.c.id, _CHUNKS.c.device_class, _CHUNKS.c.device_id).where(
            *conditions
        )
        with translate_errors("read telemetry"), self.engine.connect() as conn:
            chunks = conn.execute(listing.order_by(_CHUNKS.c.id)).all()
            if not chunks:
                return EventRows.empty()
            tables = self._decoded(conn, [chunk_id for chunk_id, _, _ in chunks])
            frame = self._window(chunks, tables, since, until, versions)
            predictions = frame.column("prediction_id").combine_chunks()
            feedback = self._feedback_labels(conn, app_id, predictions)
        return self._joined(chunks, frame, feedback)

    @staticmethod
    def _overlapping(
        app_id: str, model: str, since: float | None, until: float | None
    ) -> list[Any]:
        conditions = [_CHUNKS.c.app_id == app_id, _CHUNKS.c.model == model]
        if since is not None:
            conditions.append(_CHUNKS.c.max_ts >= since)
        if until is not None:
            conditions.append(_CHUNKS.c.min_ts < until)
        return conditions

    def _joined(
        self,
        chunks: Sequence[Any],
        frame: pa.Table,
        feedback: tuple[pa.Array, pa.Array, pa.Array] | None,
    ) -> EventRows:
        """``EventRows`` of a window's frame; feedback None = no feedback join (nulls)."""
        chunk_of = frame.column("chunk").combine_chunks()
        classes = pa.array([device_class for _, device_class, _ in chunks], pa.string())
        if feedback is None:
            feedback_label = pa.nulls(len(chunk_of), pa.string())
        else:
            feedback_ids, feedback_keys, feedback_labels = feedback
            predictions = frame.column("prediction_id").combine_chunks()
            devices = pa.array([device for _, _, device in chunks], pa.string())
            found = self._feedback_index(
                devices, chunk_of, predictions, feedback_ids, feedback_keys
            )
            feedback_label = feedback_labels.take(found)
        return EventRows(
            version=frame.column("version").combine_chunks(),
            device_class=classes.take(chunk_of),
            type=frame.column("type").combine_chunks(),
            source=frame.column("source").combine_chunks(),
            latency_ms=frame.column("latency_ms").combine_chunks(),
            confidence=frame.column("confidence").combine_chunks(),
            label=frame.column("label").combine_chunks(),
            feedback_label=feedback_label,
        )

    def timed_events(
        self, app_id: str, model: str, since: float, until: float
    ) -> tuple[np.ndarray, EventRows]:
        """(ts, events) of one model in [since, until), without the feedback join.

        The rollups' input: everything ``events()`` returns but ``feedback_label`` (all
        null), plus each event's corrected ``ts`` as float64.

        Raises:
            Unavailable: the database cannot be reached.
        """
        listing = sa.select(_CHUNKS.c.id, _CHUNKS.c.device_class, _CHUNKS.c.device_id).where(
            *self._overlapping(app_id, model, since, until)
        )
        with translate_errors("read telemetry"), self.engine.connect() as conn:
            chunks = conn.execute(listing.order_by(_CHUNKS.c.id)).all()
            if not chunks:
                return np.empty(0), EventRows.empty()
            tables = self._decoded(conn, [chunk_id for chunk_id, _, _ in chunks])
        frame = self._window(chunks, tables, since, until, None)
        ts = np.asarray(frame.column("ts").combine_chunks().to_numpy(zero_copy_only=False))
        return ts.astype(np.float64), self._joined(chunks, frame, None)

    def labelled(
        self, app_id: str, model: str, since: float, until: float, edges: Sequence[float]
    ) -> Labelled | None:
        """The inferences in [since, until) that have label feedback (as ``events()``
        joins it: same device and prediction id), with their cell in ``edges``.

        Only chunks of devices that have label feedback are read, so a model without
        feedback costs one query. None when no inference has label feedback.

        Raises:
            Unavailable: the database cannot be reached.
        """
        devices_query = (
            sa.select(_FEEDBACK.c.device_id)
            .where(_FEEDBACK.c.app_id == app_id, _FEEDBACK.c.label.is_not(None))
            .distinct()
        )
        columns = (_CHUNKS.c.id, _CHUNKS.c.device_class, _CHUNKS.c.device_id)
        with translate_errors("read telemetry feedback"), self.engine.connect() as conn:
            devices = list(conn.scalars(devices_query))
            if not devices:
                return None
            conditions = self._overlapping(app_id, model, since, until)
            if len(devices) <= _IN_LIMIT:
                conditions.append(_CHUNKS.c.device_id.in_(devices))
            listing = sa.select(*columns).where(*conditions).order_by(_CHUNKS.c.id)
            chunks = conn.execute(listing).all()
            if not chunks:
                return None
            tables = self._decoded(conn, [chunk_id for chunk_id, _, _ in chunks])
            frame = self._window(chunks, tables, since, until, None)
            predictions = frame.column("prediction_id").combine_chunks()
            feedback = self._feedback_labels(conn, app_id, predictions)
        events = self._joined(chunks, frame, feedback)
        ts = np.asarray(frame.column("ts").combine_chunks().to_numpy(zero_copy_only=False))
        keep = np.asarray(
            pc.and_(
                events.feedback_label.is_valid(),
                pc.fill_null(pc.equal(events.type, "inference"), False),
            ).to_numpy(zero_copy_only=False)
        )
        if not keep.any():
            return None
        mask = pa.array(keep)
        correct = pc.fill_null(pc.equal(events.label, events.feedback_label), False)
        cells = np.searchsorted(np.asarray(edges, np.float64), ts[keep], side="right") - 1
        return Labelled(
            cells=cells.astype(np.int64),
            versions=events.version.filter(mask),
            device_classes=events.device_class.filter(mask),
            correct=np.asarray(correct.filter(mask).to_numpy(zero_copy_only=False)),
        )

    def time_range(self, app_id: str, model: str) -> tuple[float, float] | None:
        """(earliest, latest) event ts of a model's chunks, None without any."""
        query = sa.select(sa.func.min(_CHUNKS.c.min_ts), sa.func.max(_CHUNKS.c.max_ts)).where(
            _CHUNKS.c.app_id == app_id, _CHUNKS.c.model == model
        )
        with translate_errors("read telemetry"), self.engine.connect() as conn:
            low, high = conn.execute(query).one()
        return None if low is None else (float(low), float(high))

    def rollups(
        self,
        app_id: str,
        model: str,
        since: float,
        until: float,
        decode: Callable[[bytes], Any] = Partial.decode,
    ) -> dict[tuple[int, int], Any]:
        """The stored rollups of spans inside [since, until), by (span_s, start).

        Raises:
            Unavailable: the database cannot be reached.
        """
        listing = sa.select(_ROLLUPS.c.id, _ROLLUPS.c.span_s, _ROLLUPS.c.start).where(
            _ROLLUPS.c.app_id == app_id,
            _ROLLUPS.c.model == model,
            _ROLLUPS.c.start >= since,
            _ROLLUPS.c.start < until,
        )
        with translate_errors("read telemetry rollups"), self.engine.connect() as conn:
            rows = conn.execute(listing).all()
            ids = [row_id for row_id, _, _ in rows]
            found: dict[int, Any] = {}
            with self._rollup_lock:
                for i in ids:
                    hit = self._rollup_cache.get(i)
                    if hit is not None:
                        self._rollup_cache.move_to_end(i)
                        found[i] = hit[0]
            missing = [i for i in ids if i not in found]
            sizes: dict[int, int] = {}
            for part in _parts(missing):
                query = sa.select(_ROLLUPS.c.id, _ROLLUPS.c.payload).where(_ROLLUPS.c.id.in_(part))
                for row_id, payload in conn.execute(query):
                    found[row_id] = decode(payload)
                    sizes[row_id] = len(payload)
        with self._rollup_lock:
            for row_id, size in sizes.items():
                if row_id not in self._rollup_cache:
                    self._rollup_cache[row_id] = (found[row_id], size)
                    self._rollup_cache_bytes += size
            while self._rollup_cache_bytes > self._rollup_cache_limit and self._rollup_cache:
                _, (_, size) = self._rollup_cache.popitem(last=False)
                self._rollup_cache_bytes -= size
        return {(span, int(start)): found[i] for i, span, start in rows if i in found}

    def chunk_mark(self) -> int:
        """The newest chunk id such that every chunk up to it is committed."""
        with translate_errors("read telemetry"), self.engine.connect() as conn, conn.begin():
            if self.dialect == "postgresql":  # wait for intakes holding ids in flight
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CHUNK_ID_LOCK})")
            newest = conn.scalar(sa.select(sa.func.coalesce(sa.func.max(_CHUNKS.c.id), 0)))
            return int(newest or 0)

    def build_rollups(
        self,
        app_id: str,
        model: str,
        spans: Sequence[tuple[int, int]],
    ) -> dict[tuple[int, int], Partial]:
        """Build and store the rollups of closed (span_s, start) spans from their events.

        A span whose events change while it is built (a chunk newer than the build's
        mark overlaps it) is returned but not stored; intake deletes a stored span's row
        when events of it arrive later (``_invalidate``), so a stored row is always the
        exact summary of its events.

        Raises:
            Unavailable: the database cannot be reached.
        """
        if not spans:
            return {}
        mark = self.chunk_mark()
        ordered = sorted(spans, key=lambda s: (s[1], s[0]))
        low = min(start for _, start in ordered)
        high = max(start + span for span, start in ordered)
        ts, events = self.timed_events(app_id, model, low, high)
        result: dict[tuple[int, int], Partial] = {}
        for span_s in {span for span, _ in ordered}:
            starts = np.array([start for span, start in ordered if span == span_s], np.int64)
            inside = np.searchsorted(starts, np.floor(ts / span_s) * span_s)
            inside = np.minimum(inside, len(starts) - 1)
            hit = starts[inside] == np.floor(ts / span_s) * span_s
            if hit.any():
                mask = pa.array(hit)
                parts = summarise(events.filter(mask), starts[inside[hit]])
            else:
                parts = {}
            for start in starts.tolist():
                result[(span_s, start)] = parts.get(start, _EMPTY)
        payloads = {
            key: (part.encode(), int(part.counters[:, :2].sum())) for key, part in result.items()
        }
        self._save_rollups(app_id, model, payloads, mark, low, high)
        return result

    def build_fleet_rollups(
        self, app_id: str, spans: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], pa.Table]:
        """Build and store the fleet device tables of closed (span_s, start) spans (see
        ``_fleet``); stored like ``build_rollups`` (never stale).

        Raises:
            Unavailable: the database cannot be reached.
        """
        if not spans:
            return {}
        mark = self.chunk_mark()
        low = min(start for _, start in spans)
        high = max(start + span for span, start in spans)
        frame = self.fleet_events(app_id, low, high)
        ts = np.asarray(frame.column("ts").to_numpy(zero_copy_only=False), np.float64)
        result: dict[tuple[int, int], pa.Table] = {}
        for span, start in spans:
            inside = pa.array((ts >= start) & (ts < start + span))
            result[(span, start)] = device_table(frame.filter(inside))
        payloads = {key: (_ipc(table), int(table.num_rows)) for key, table in result.items()}
        self._save_rollups(app_id, FLEET, payloads, mark, low, high)
        return result

    def fleet_events(self, app_id: str, since: float, until: float) -> pa.Table:
        """Every stored event of the app (all models and kinds) in [since, until), with its
        chunk's model, device id, device class, app version and platform.

        Raises:
            Unavailable: the database cannot be reached.
        """
        listing = (
            sa.select(
                _CHUNKS.c.id,
                _CHUNKS.c.model,
                _CHUNKS.c.device_id,
                _CHUNKS.c.device_class,
                _CHUNKS.c.app_version,
                _CHUNKS.c.platform,
            )
            .where(_CHUNKS.c.app_id == app_id, _CHUNKS.c.max_ts >= since, _CHUNKS.c.min_ts < until)
            .order_by(_CHUNKS.c.id)
        )
        names = ("type", "ts", "version", "variant", "stage", "outcome", "bytes")
        with translate_errors("read telemetry"), self.engine.connect() as conn:
            chunks = conn.execute(listing).all()
            tables = self._decoded(conn, [chunk[0] for chunk in chunks]) if chunks else {}
        if not chunks:
            empty = {"ts": pa.array([], pa.float64()), "bytes": pa.array([], pa.int64())}
            columns = ("model", "device_id", "device_class", "app_version", "platform", *names)
            return pa.table(
                {c: empty.get(c, pa.array([], pa.string())) for c in columns}
                | {"version": pa.array([], pa.int64())}
            )
        parts = [tables[chunk[0]].select(list(names)) for chunk in chunks]
        counts = [part.num_rows for part in parts]
        frame = pa.concat_tables(parts)
        chunk_of = pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), counts))
        for index, column in enumerate(
            ("model", "device_id", "device_class", "app_version", "platform"), start=1
        ):
            values = pa.array([chunk[index] for chunk in chunks], pa.string())
            frame = frame.append_column(column, values.take(chunk_of))
        ts = frame.column("ts")
        return frame.filter(pc.and_(pc.greater_equal(ts, since), pc.less(ts, until)))

    def _save_rollups(
        self,
        app_id: str,
        model: str,
        payloads: dict[tuple[int, int], tuple[bytes, int]],
        mark: int,
        low: float,
        high: float,
    ) -> None:
        """Insert rollup rows unless a chunk newer than ``mark`` overlaps their span (then
        the span's events changed while it was built: it is left to the next read)."""
        rows: list[dict[str, Any]] = [
            {
                "app_id": app_id,
                "model": model,
                "span_s": span,
                "start": start,
                "events": events,
                "payload": payload,
            }
            for (span, start), (payload, events) in payloads.items()
        ]
        insert = _insert(self.dialect, _ROLLUPS).on_conflict_do_nothing(
            index_elements=["app_id", "model", "span_s", "start"]
        )
        newer_query = sa.select(_CHUNKS.c.min_ts, _CHUNKS.c.max_ts).where(
            _CHUNKS.c.app_id == app_id,
            _CHUNKS.c.id > mark,
            _CHUNKS.c.max_ts >= low,
            _CHUNKS.c.min_ts < high,
        )
        if model != FLEET:
            newer_query = newer_query.where(_CHUNKS.c.model == model)
        with self._write_turn, self._write("store telemetry rollups") as conn:
            if self.dialect == "postgresql":  # no intake in flight while we check and insert
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CHUNK_ID_LOCK})")
            newer = conn.execute(newer_query).all()
            fresh = [
                row
                for row in rows
                if not any(
                    lo < row["start"] + row["span_s"] and hi >= row["start"] for lo, hi in newer
                )
            ]
            for part in _parts(fresh, 200):
                conn.execute(insert, list(part))

    def _decoded(self, conn: sa.Connection, ids: list[int]) -> dict[int, pa.Table]:
        tables = self.cache.get_many(ids)
        missing = [chunk_id for chunk_id in ids if chunk_id not in tables]
        for part in _parts(missing):
            query = sa.select(_CHUNKS.c.id, _CHUNKS.c.payload).where(_CHUNKS.c.id.in_(part))
            for chunk_id, payload in conn.execute(query):
                table = decode_payload(payload)
                self.cache.put(chunk_id, table)
                tables[chunk_id] = table
        return tables

    @staticmethod
    def _window(
        chunks: Sequence[Any],
        tables: dict[int, pa.Table],
        since: float | None,
        until: float | None,
        versions: Sequence[int] | None,
    ) -> pa.Table:
        """All chunks as one table (plus a ``chunk`` index column), filtered."""
        parts = [tables[chunk[0]] for chunk in chunks]
        counts = [part.num_rows for part in parts]
        frame = pa.concat_tables(parts).append_column(
            "chunk", pa.array(np.repeat(np.arange(len(parts), dtype=np.int32), counts))
        )
        mask = pc.is_in(frame.column("type"), value_set=_MEASURED)
        if since is not None:
            mask = pc.and_(mask, pc.greater_equal(frame.column("ts"), since))
        if until is not None:
            mask = pc.and_(mask, pc.less(frame.column("ts"), until))
        if versions is not None:
            wanted = pa.array(list(versions), pa.int64())
            mask = pc.and_(mask, pc.is_in(frame.column("version"), value_set=wanted))
        if pc.all(mask).as_py():  # the usual case; filtering copies every column
            return frame
        return frame.filter(mask)

    @staticmethod
    def _feedback_index(
        devices: pa.Array,
        chunk_of: pa.Array,
        predictions: pa.Array,
        feedback_ids: pa.Array,
        feedback_keys: pa.Array,
    ) -> pa.Array:
        """Per event, the index of its (device, prediction id) in ``feedback_keys``, or null.

        Keys are built only for events whose prediction id has feedback of some device
        (usually few), so a million events cost one ``is_in`` on the prediction ids.
        """
        if len(feedback_keys) == 0:
            return pa.nulls(len(predictions), pa.int32())
        positions = pc.indices_nonzero(pc.is_in(predictions, value_set=feedback_ids))
        if len(positions) == 0:
            return pa.nulls(len(predictions), pa.int32())
        keys = pc.binary_join_element_wise(
            devices.take(chunk_of.take(positions)), predictions.take(positions), _KEY_SEPARATOR
        )
        matched = pc.fill_null(pc.index_in(keys, value_set=feedback_keys), -1).to_numpy()
        index = np.full(len(predictions), -1, np.int32)
        index[positions.to_numpy()] = matched
        return pa.array(index, mask=index < 0)

    @staticmethod
    def _feedback_labels(
        conn: sa.Connection, app_id: str, predictions: pa.Array
    ) -> tuple[pa.Array, pa.Array, pa.Array]:
        """(distinct prediction ids, device + prediction id keys, labels) of label feedback.

        Selected by prediction id (the index's prefix), so the rows may include other
        devices' feedback on the same ids; the caller matches the device too.
        """
        base = sa.select(_FEEDBACK.c.device_id, _FEEDBACK.c.prediction_id, _FEEDBACK.c.label).where(
            _FEEDBACK.c.app_id == app_id, _FEEDBACK.c.label.is_not(None)
        )
        present = predictions.drop_null()
        if len(present) > _FEEDBACK_PROBE_MAX:  # one scan of the app's feedback beats
            queries = [base]  # thousands of probes (and hashing the ids)
        else:
            wanted = sorted(pc.unique(present).to_pylist())
            queries = [base.where(_FEEDBACK.c.prediction_id.in_(p)) for p in _parts(wanted)]
        ids: set[str] = set()
        keys: list[str] = []
        labels: list[str] = []
        if len(present):
            for query in queries:
                for device_id, prediction_id, label in conn.execute(query):
                    ids.add(prediction_id)
                    keys.append(f"{device_id}{_KEY_SEPARATOR}{prediction_id}")
                    labels.append(label)
        return (
            pa.array(list(ids), pa.string()),
            pa.array(keys, pa.string()),
            pa.array(labels, pa.string()),
        )
