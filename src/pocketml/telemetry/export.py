"""The Parquet exporter: chunks in the database -> day-partitioned Parquet files.

The database is the source of truth; Parquet files are derived from it, so that every
event lands in exactly one file:

1. take the lease ``parquet`` (one row of ``telemetry_exports``): only one replica
   exports at a time;
2. if no range is in flight, choose one — the chunks after the watermark, at most
   ``max_chunks`` — and record its end as ``pending_until`` (committed);
3. write the range's chunks per (app, receive day) to
   ``part-<first chunk id>-<last chunk id>.parquet`` (temporary name, then rename);
4. advance the watermark to ``pending_until`` and clear it.

A crash after step 2 or 3 leaves ``pending_until`` set, and the next pass (on any
replica) re-exports exactly the same range: the same file names, overwritten with the
same rows, never a second copy.

The lease is a ``pocketml.db.Lease`` on the same row as the watermark, and the
background loop is ``pocketml.db.run_periodically``. The lease owner is the home's stable
identity (``pocketml.db.claim_home_identity``): a replica restarted after a crash is the
same owner and reclaims its own unexpired lease at once instead of waiting out the TTL.
A final flush (graceful stop, ``pocketml telemetry export``) that cannot take the lease
says so in the log: who holds it, until when, and how many chunks stay in the database
for the holder or the next export.

The watermark needs chunk ids to become visible in order. On SQLite they do (one writer,
AUTOINCREMENT). On PostgreSQL a sequence hands out ids before commit, so a transaction
holding a smaller id could commit after a larger one was exported; there intake holds
the advisory lock ``CHUNK_ID_LOCK`` shared and step 2 takes it exclusively: it waits
for the intake transactions in flight (milliseconds) and then sees every smaller id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import sqlalchemy as sa

from pocketml.db import (
    WRITE,
    HomeIdentity,
    Lease,
    claim_home_identity,
    create_engine,
    process_owner,
    run_migrations,
    run_periodically,
    translate_errors,
)
from pocketml.telemetry._chunks import decode_payload
from pocketml.telemetry._orm import TelemetryChunkRow, TelemetryExportRow
from pocketml.telemetry._parquet import ExportChunk, write_partition
from pocketml.telemetry._store import CHUNK_ID_LOCK

__all__ = ["ExportResult", "TelemetryExporter", "export_database"]

logger = logging.getLogger(__name__)

LEASE_NAME = "parquet"
_CHUNKS: sa.Table = TelemetryChunkRow.__table__  # type: ignore[assignment]
_EXPORTS: sa.Table = TelemetryExportRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ExportResult:
    """What one export pass wrote: chunks, events, files, and the new watermark."""

    chunks: int
    events: int
    files: tuple[Path, ...]
    watermark: int


class TelemetryExporter:
    """Exports committed chunks to Parquet under ``root`` while holding the lease.

    Args:
        engine: the registry's open engine.
        root: the telemetry directory (``<home>/telemetry``).
        interval_s: seconds between background passes (``run_forever``).
        max_pending_events: events ingested on this replica that wake the background
            loop before ``interval_s`` is up.
        max_chunks: most chunks one pass exports (bounds its memory).
        owner: this replica's lease owner id; by default the stable identity of ``root``
            (its home) when no other live process of the home holds it, else host, pid
            and a random suffix.
    """

    def __init__(
        self,
        engine: sa.Engine,
        root: Path,
        *,
        interval_s: float = 10.0,
        max_pending_events: int = 500_000,
        max_chunks: int = 1_000,
        owner: str | None = None,
    ) -> None:
        self.engine = engine
        self.root = root
        self.interval_s = interval_s
        self.max_pending_events = max_pending_events
        self.max_chunks = max_chunks
        self._owner = owner
        self._identity: HomeIdentity | None = None
        self._lease = Lease(
            engine,
            _EXPORTS,
            LEASE_NAME,
            what="the telemetry export lease",
            new_row={"watermark": 0, "pending_until": None},
        )
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def owner(self) -> str:
        """This exporter's lease owner id (the home's identity is claimed on first use)."""
        if self._owner is None:
            self._identity = claim_home_identity(self.root)
            self._owner = self._identity.owner if self._identity else process_owner()
        return self._owner

    def close(self) -> None:
        """Give up the home identity (after ``release``); the next start may claim it."""
        if self._identity is not None:
            self._identity.close()
            self._identity = None

    # -- one pass --------------------------------------------------------------------------

    def export_once(self, now: float | None = None) -> ExportResult | None:
        """Export one range of chunks if this replica holds (or takes) the lease.

        Args:
            now: the clock (unix seconds); ``time.time()`` by default.

        Returns:
            What was exported (``chunks == 0`` when nothing was pending), or None when
            there is work but another replica holds the lease.

        Raises:
            Unavailable: the database cannot be reached.
        """
        moment = time.time() if now is None else now
        idle = self._idle_watermark()
        if idle is not None:  # nothing to do: no lease write, no write transaction at all
            return ExportResult(0, 0, (), idle)
        if not self._acquire(moment):
            return None
        watermark, upper = self._plan()
        if upper is None:
            return ExportResult(0, 0, (), watermark)
        chunks, events, files = self._write_range(watermark, upper)
        self._advance(upper)
        logger.info(
            "exported %d telemetry chunks (%d events) to %d Parquet files",
            chunks,
            events,
            len(files),
        )
        return ExportResult(chunks, events, tuple(files), upper)

    def flush(self, now: float | None = None, *, final: bool = False) -> int:
        """Export until nothing is pending (or another replica holds the lease).

        Args:
            now: the clock (unix seconds); ``time.time()`` by default.
            final: the last flush before this process stops (or a one-off export): when
                the lease is held elsewhere, log who holds it and what stays unexported.

        Returns:
            The number of events exported.
        """
        total = 0
        while True:
            result = self.export_once(now)
            if result is None and final:
                self._report_blocked(time.time() if now is None else now)
            if result is None or result.chunks == 0:
                return total
            total += result.events

    def _report_blocked(self, now: float) -> None:
        holder = self._lease.holder()
        watermark = self.watermark()
        query = sa.select(sa.func.count()).select_from(_CHUNKS).where(_CHUNKS.c.id > watermark)
        with translate_errors("count the chunks left to export"), self.engine.connect() as conn:
            waiting = conn.scalar(query)
        who, until = (holder.owner, holder.expires_at - now) if holder else ("?", 0.0)
        logger.warning(
            "telemetry export skipped: the export lease is held by %s for %.0f s more; %d "
            "chunks stay in the database (nothing is lost) until that replica exports them "
            "or `pocketml telemetry export` runs after the lease expires",
            who,
            max(until, 0.0),
            int(waiting or 0),
        )

    def watermark(self) -> int:
        """The id of the last exported chunk (0 before the first export)."""
        query = sa.select(_EXPORTS.c.watermark).where(_EXPORTS.c.name == LEASE_NAME)
        with translate_errors("read the telemetry export watermark"), self.engine.connect() as c:
            return int(c.scalar(query) or 0)

    def backlog(self, now: float | None = None) -> tuple[int, float]:
        """(chunks not yet exported, seconds since the oldest of them was received).

        ``(0, 0.0)`` when everything is exported; ``GET /metrics`` reports both as the
        exporter's lag.

        Raises:
            Unavailable: the database cannot be reached.
        """
        moment = time.time() if now is None else now
        watermark = (
            sa.select(_EXPORTS.c.watermark).where(_EXPORTS.c.name == LEASE_NAME).scalar_subquery()
        )
        waiting = sa.select(sa.func.count(), sa.func.min(_CHUNKS.c.received_at)).where(
            _CHUNKS.c.id > sa.func.coalesce(watermark, 0)  # no row before the first export
        )
        with translate_errors("read the telemetry export backlog"), self.engine.connect() as c:
            count, oldest = c.execute(waiting).one()
        if not count or oldest is None:
            return 0, 0.0
        return int(count), max(moment - oldest.timestamp(), 0.0)

    def _write(self) -> sa.Connection:
        return self.engine.connect().execution_options(**WRITE)

    def _acquire(self, now: float) -> bool:
        return self._lease.acquire(self.owner, now, max(3 * self.interval_s, 30.0))

    def _idle_watermark(self) -> int | None:
        """The watermark when no range is in flight and no chunk is newer, else None.

        A read-only check, so an idle server's background passes never write to the
        database (a write transaction every pass would contend with intake for nothing).
        """
        state = sa.select(_EXPORTS.c.watermark, _EXPORTS.c.pending_until).where(
            _EXPORTS.c.name == LEASE_NAME
        )
        with translate_errors("read the telemetry export state"), self.engine.connect() as conn:
            row = conn.execute(state).first()
            if row is None or row.pending_until is not None:
                return None
            newer = sa.select(_CHUNKS.c.id).where(_CHUNKS.c.id > row.watermark).limit(1)
            if conn.scalar(newer) is not None:
                return None
            return int(row.watermark)

    def _plan(self) -> tuple[int, int | None]:
        """(watermark, end of the range to export) — the range in flight, or a new one."""
        state = sa.select(_EXPORTS.c.watermark, _EXPORTS.c.pending_until).where(
            _EXPORTS.c.name == LEASE_NAME
        )
        with translate_errors("plan a telemetry export"), self._write() as conn, conn.begin():
            watermark, pending = conn.execute(state).one()
            if pending is not None:
                return int(watermark), int(pending)
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({CHUNK_ID_LOCK})")
            ids = sa.select(_CHUNKS.c.id).where(_CHUNKS.c.id > watermark)
            window = ids.order_by(_CHUNKS.c.id).limit(self.max_chunks).subquery()
            upper = conn.scalar(sa.select(sa.func.max(window.c.id)))
            if upper is None:
                return int(watermark), None
            conn.execute(
                sa.update(_EXPORTS)
                .where(_EXPORTS.c.name == LEASE_NAME, _EXPORTS.c.owner == self.owner)
                .values(pending_until=upper)
            )
            return int(watermark), int(upper)

    def _write_range(self, watermark: int, upper: int) -> tuple[int, int, list[Path]]:
        query = (
            sa.select(
                _CHUNKS.c.id,
                _CHUNKS.c.app_id,
                _CHUNKS.c.batch_id,
                _CHUNKS.c.model,
                _CHUNKS.c.device_id,
                _CHUNKS.c.platform,
                _CHUNKS.c.device_class,
                _CHUNKS.c.app_version,
                _CHUNKS.c.received_at,
                _CHUNKS.c.clock_offset_s,
                _CHUNKS.c.payload,
            )
            .where(_CHUNKS.c.id > watermark, _CHUNKS.c.id <= upper)
            .order_by(_CHUNKS.c.id)
        )
        with translate_errors("read telemetry chunks to export"), self.engine.connect() as conn:
            chunks = [
                ExportChunk(
                    id=row.id,
                    app_id=row.app_id,
                    batch_id=row.batch_id,
                    model=row.model,
                    device_id=row.device_id,
                    platform=row.platform,
                    device_class=row.device_class,
                    app_version=row.app_version,
                    received_at=row.received_at,
                    events=decode_payload(row.payload),
                    clock_offset_s=row.clock_offset_s,
                )
                for row in conn.execute(query)
            ]
        files = []
        ordered = sorted(chunks, key=lambda c: (c.app_id, c.received_at.date(), c.id))
        for _, group in groupby(ordered, key=lambda c: (c.app_id, c.received_at.date())):
            files.append(write_partition(self.root, list(group)))
        return len(chunks), sum(c.events.num_rows for c in chunks), files

    def _advance(self, upper: int) -> None:
        """Move the watermark past the exported range (after the files are in place)."""
        query = (
            sa.update(_EXPORTS)
            .where(_EXPORTS.c.name == LEASE_NAME, _EXPORTS.c.pending_until == upper)
            .values(watermark=upper, pending_until=None)
        )
        with (
            translate_errors("advance the telemetry export watermark"),
            self._write() as conn,
            conn.begin(),
        ):
            conn.execute(query)

    def release(self) -> None:
        """Give the lease up early (only when this replica holds it)."""
        self._lease.release(self.owner)

    # -- in the server ---------------------------------------------------------------------

    def note_ingested(self, events: int) -> None:
        """Count events stored on this replica; wake the loop past ``max_pending_events``.

        Thread-safe (intake runs in worker threads).
        """
        with self._pending_lock:
            self._pending += events
            due = self._pending >= self.max_pending_events
        if due and self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._wake.set)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Export every ``interval_s`` (or when woken) until ``stop``; then flush.

        Args:
            stop: set it to end the loop; a last flush runs and the lease is released.
        """
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            await run_periodically(
                self._background_pass,
                stop,
                interval_s=self.interval_s,
                name="telemetry export",
                wake=self._wake,
                final_fn=lambda: self.flush(final=True),
                on_stop=self.release,
                logger=logger,
            )
        finally:
            self._loop = None
            self.close()

    def _background_pass(self) -> None:
        with self._pending_lock:
            self._pending = 0
        self.flush()


def export_database(database_url: str, root: Path) -> int:
    """Export every chunk of a database not yet in Parquet (``pocketml telemetry export``).

    Args:
        database_url: the registry database (migrated to the newest revision first).
        root: the telemetry directory (``<home>/telemetry``).

    Returns:
        The number of events written (0 when a running server holds the export lease).

    Raises:
        InvalidInput: a malformed database URL.
        Unavailable: the database cannot be reached.
    """
    engine = create_engine(database_url)
    try:
        run_migrations(engine)
        exporter = TelemetryExporter(engine, root)
        try:
            return exporter.flush(final=True)
        finally:
            exporter.release()  # a running server's exporter need not wait for expiry
            exporter.close()
    finally:
        engine.dispose()
