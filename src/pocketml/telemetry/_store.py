"""TelemetryStore: batches, events and feedback on the registry's database engine.

Intake is one transaction: insert the batch row with ``ON CONFLICT DO NOTHING`` (the
unique (app, batch_id) constraint decides duplicates, also between replicas), then all
events in one ``executemany``. Feedback is an upsert on (app, prediction_id) where the
newest ``ts`` wins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from pocketml.registry._db import WRITE, translate_errors
from pocketml.telemetry._orm import FeedbackRow, TelemetryBatchRow, TelemetryEventRow
from pocketml.telemetry._types import EVENT_COLUMNS, Feedback

__all__ = ["TelemetryStore"]

_BATCHES: sa.Table = TelemetryBatchRow.__table__  # type: ignore[assignment]
_EVENTS: sa.Table = TelemetryEventRow.__table__  # type: ignore[assignment]
_FEEDBACK: sa.Table = FeedbackRow.__table__  # type: ignore[assignment]
_CONTEXT_COLUMNS = ("platform", "device_class", "app_version")


def _insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT with ``on_conflict_do_*`` for the engine's dialect."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


class TelemetryStore:
    """SQL storage of telemetry. Returns plain tuples/dataclasses, never rows.

    Args:
        engine: the registry's open engine.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        mark = "?" if self.dialect == "sqlite" else "%s"
        columns = ("app_id", "batch_id", "device_id", *EVENT_COLUMNS, *_CONTEXT_COLUMNS)
        quoted = ", ".join(f'"{column}"' for column in columns)
        marks = ", ".join([mark] * len(columns))
        self._insert_events_sql = f"INSERT INTO {_EVENTS.name} ({quoted}) VALUES ({marks})"
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
        context: Mapping[str, str | None],
        events: Sequence[Mapping[str, Any]],
        received: datetime,
    ) -> bool:
        """Store a batch and its events unless (app_id, batch_id) exists already.

        Returns:
            True when stored, False for a duplicate (nothing written).

        Raises:
            Unavailable: the database cannot be reached.
        """
        shared = (app_id, batch_id, device_id)
        tail = tuple(context.get(name) for name in _CONTEXT_COLUMNS)
        rows = [(*shared, *(e.get(c) for c in EVENT_COLUMNS), *tail) for e in events]
        with self._write_turn, self._write("store a telemetry batch") as conn:
            inserted = conn.execute(
                _insert(self.dialect, _BATCHES)
                .values(
                    app_id=app_id,
                    batch_id=batch_id,
                    device_id=device_id,
                    event_count=len(rows),
                    received_at=received,
                )
                .on_conflict_do_nothing(index_elements=["app_id", "batch_id"])
                .returning(_BATCHES.c.id)
            ).first()
            if inserted is None:  # the batch was stored before
                return False
            # One DBAPI executemany with positional tuples: SQLAlchemy's per-row dict
            # processing would cost more than the database work itself.
            conn.exec_driver_sql(self._insert_events_sql, rows)
        return True

    def upsert_feedback(self, app_id: str, feedback: Feedback, received: datetime) -> None:
        """Insert or replace the feedback of one prediction (the newest ``ts`` wins).

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
        changed = {k: stmt.excluded[k] for k in values if k not in ("app_id", "prediction_id")}
        stmt = stmt.on_conflict_do_update(
            index_elements=["app_id", "prediction_id"],
            set_=changed,
            where=_FEEDBACK.c.ts <= stmt.excluded.ts,
        )
        with self._write("store feedback") as conn:
            conn.execute(stmt)

    def count_events(self, app_id: str) -> int:
        """How many events the app has stored (for tests and benchmarks)."""
        with translate_errors("count telemetry events"), self.engine.connect() as conn:
            return int(
                conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(_EVENTS)
                    .where(_EVENTS.c.app_id == app_id)
                )
                or 0
            )

    def metric_rows(
        self, app_id: str, model: str, since: float | None, until: float | None
    ) -> list[tuple[Any, ...]]:
        """The events of one model in [since, until) joined with their label feedback.

        Returns:
            Tuples (version, device_class, type, source, latency_ms, confidence, label,
            feedback_label) of inference and error events.

        Raises:
            Unavailable: the database cannot be reached.
        """
        conditions = [
            _EVENTS.c.app_id == app_id,
            _EVENTS.c.model == model,
            _EVENTS.c.type.in_(("inference", "error")),
        ]
        if since is not None:
            conditions.append(_EVENTS.c.ts >= since)
        if until is not None:
            conditions.append(_EVENTS.c.ts < until)
        join = _EVENTS.outerjoin(
            _FEEDBACK,
            sa.and_(
                _FEEDBACK.c.app_id == _EVENTS.c.app_id,
                _FEEDBACK.c.prediction_id == _EVENTS.c.prediction_id,
            ),
        )
        query = (
            sa.select(
                _EVENTS.c.version,
                _EVENTS.c.device_class,
                _EVENTS.c.type,
                _EVENTS.c.source,
                _EVENTS.c.latency_ms,
                _EVENTS.c.confidence,
                _EVENTS.c.label,
                _FEEDBACK.c.label,
            )
            .select_from(join)
            .where(*conditions)
        )
        with translate_errors("read telemetry"), self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]
