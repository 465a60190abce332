"""TelemetryService: idempotent intake of event batches, feedback, and aggregates.

A batch goes to the database in one transaction (duplicates decided by the unique
(app, batch_id) constraint): its batch row and one chunk per model. The database is the
source of truth; the ``TelemetryExporter`` writes the chunks to day-partitioned Parquet
files under ``<home>/telemetry`` afterwards (a background task in the server,
``export_parquet()`` on demand), so intake never writes a file.

What a client can rely on (docs/server.md, "Telemetry semantics"):

- Events and feedback naming a model the app does not have are not stored, and the
  answer says so: the batch's ``rejected`` lists them per model (the rest of the batch
  is stored; a batch of only unknown models stores nothing, not even its id, so a retry
  gets the same answer); feedback answers ``NotFound`` (404). Known model names are
  cached per app for ``model_cache_ttl_s``, so intake does not read the registry per
  batch; an unknown name is looked up every time (a model created a moment ago counts).
- A prediction id is unique per device: feedback is keyed and joined to its inference
  by (device id, prediction id), never by the prediction id alone.
- Event timestamps are corrected for the device's clock (``_intake.correct_clock``)
  before they are stored, so every time window (metrics, guardrails, experiments, the
  Parquet files' ``ts``) uses the corrected ts.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from pocketml.errors import InvalidInput, NotFound, Unavailable
from pocketml.protocol import STORED_EVENT_KINDS
from pocketml.registry import Registry
from pocketml.telemetry._fleet import FLEET, FleetSummary, device_table, summarise_fleet
from pocketml.telemetry._intake import ClockPolicy, IngestReport, RejectedModel, correct_clock
from pocketml.telemetry._rollup import Cell, metrics_rows, plan, summarise
from pocketml.telemetry._store import TelemetryStore, read_ipc
from pocketml.telemetry._types import Feedback, MetricsRow, TelemetryBatch
from pocketml.telemetry.export import TelemetryExporter

__all__ = ["MAX_SERIES_BUCKETS", "TelemetryService"]

logger = logging.getLogger(__name__)

MAX_SERIES_BUCKETS = 1000
"""The most buckets one ``model_series`` call answers."""
_MAX_CACHED_MODELS = 10_000  # (app, model) names; the cache is cleared beyond this


class TelemetryService:
    """Stores device telemetry and feedback, answers aggregates. ``open()`` before use.

    Args:
        registry: the open registry (its engine holds the telemetry tables).
        parquet_root: the Parquet directory (``<home>/telemetry``); None = database only.
        export_interval_s: seconds between background Parquet exports (``run_exporter``).
        export_pending_events: events ingested on this replica that trigger an export
            before the interval is up.
        clock: the server's clock, unix seconds (tests pass a fixed one).
        clock_policy: how event timestamps are corrected (see ``_intake``).
        model_cache_ttl_s: how long a model name found in the registry is trusted
            without a lookup (a deleted model's events are accepted this long).
    """

    def __init__(
        self,
        registry: Registry,
        parquet_root: Path | None,
        *,
        export_interval_s: float = 10.0,
        export_pending_events: int = 500_000,
        clock: Callable[[], float] = time.time,
        clock_policy: ClockPolicy | None = None,
        model_cache_ttl_s: float = 5.0,
    ) -> None:
        self.registry = registry
        self.parquet_root = parquet_root
        self.export_interval_s = export_interval_s
        self.export_pending_events = export_pending_events
        self.clock = clock
        self.clock_policy = clock_policy or ClockPolicy()
        self.model_cache_ttl_s = model_cache_ttl_s
        self._store: TelemetryStore | None = None
        self._exporter: TelemetryExporter | None = None
        self._models_seen: dict[tuple[str, str], float] = {}  # (app, model) -> found at
        self._models_lock = threading.Lock()

    def open(self) -> None:
        """Attach to the registry's database (the registry must be open)."""
        engine = self.registry.store.engine
        self._store = TelemetryStore(engine)
        if self.parquet_root is not None:
            self._exporter = TelemetryExporter(
                engine,
                self.parquet_root,
                interval_s=self.export_interval_s,
                max_pending_events=self.export_pending_events,
            )

    @property
    def exporter(self) -> TelemetryExporter | None:
        """The Parquet exporter (None without a Parquet directory or before ``open()``)."""
        return self._exporter

    def export_parquet(self) -> int:
        """Export every stored chunk not yet in Parquet, now (tests, benchmarks, CLI).

        Returns:
            The number of events written (0 without a Parquet directory, or when
            another replica holds the export lease).

        Raises:
            Unavailable: the database cannot be reached.
        """
        return self._exporter.flush() if self._exporter is not None else 0

    @property
    def store(self) -> TelemetryStore:
        """The telemetry store. Raises Unavailable before ``open()``."""
        if self._store is None:
            raise Unavailable("the telemetry service is not open; call open() first.")
        return self._store

    def ingest(
        self,
        app_id: str,
        batch: TelemetryBatch,
        *,
        device_sent_at: float | None = None,
        on_commit_rows: Callable[[sa.Connection], None] | None = None,
    ) -> IngestReport:
        """Store a validated batch once (a second copy of the same batch id is a no-op).

        Events of models the app does not have are left out and reported; the rest have
        their timestamps corrected for the device's clock and are stored.

        Args:
            app_id: the device's app.
            batch: the validated batch (its events' ``ts`` are corrected in place).
            device_sent_at: the device clock's time when it sent the batch, unix seconds
                (a route passes the request's HTTP ``Date`` header); None when unknown.
            on_commit_rows: writes another service's rows of this batch inside its
                transaction, after the clock correction, once per batch id (see
                ``TelemetryStore.insert_batch``). Events of kinds that are not rows
                (``profile``) are corrected and counted but stored only by it.

        Returns:
            An ``IngestReport``: ``accepted`` events stored, or ``duplicate`` when this
            app stored this batch id before (nothing stored again); ``rejected`` events
            per unknown model; the clock correction applied.

        Raises:
            Unavailable: the database cannot be reached (nothing is stored; retry).
        """
        received = self.clock()
        events, rejected = self._split_unknown(app_id, batch.events)
        if not events:  # nothing to store, not even the batch id: a retry answers the same
            logger.info(
                "telemetry batch %s of app %s names only unknown models", batch.batch_id, app_id
            )
            return IngestReport(accepted=0, duplicate=False, rejected=rejected)
        correction = correct_clock(events, received, device_sent_at, self.clock_policy)
        rows = _stored_kinds(events)
        context = {
            "platform": batch.platform,
            "device_class": batch.device_class,
            "app_version": batch.app_version,
        }
        stored = self.store.insert_batch(
            app_id,
            batch.batch_id,
            batch.device_id,
            context,
            rows,
            datetime.fromtimestamp(received, UTC),
            clock_offset_s=correction.offset_s,
            event_count=len(events),
            on_commit_rows=on_commit_rows,
        )
        if not stored:
            logger.info("telemetry batch %s of app %s is a duplicate", batch.batch_id, app_id)
            return IngestReport(accepted=0, duplicate=True, rejected=rejected)
        if correction.offset_s or correction.clamped or correction.stale:
            logger.info(
                "telemetry batch %s of device %s: clock offset %.0f s applied, %d events "
                "clamped to the receive time, %d older than the stale horizon",
                batch.batch_id,
                batch.device_id,
                correction.offset_s,
                correction.clamped,
                correction.stale,
            )
        if self._exporter is not None:
            self._exporter.note_ingested(len(rows))
        return IngestReport(
            accepted=len(events),
            duplicate=False,
            rejected=rejected,
            clock_offset_s=correction.offset_s,
            clamped=correction.clamped,
            stale=correction.stale,
        )

    def record_feedback(self, app_id: str, feedback: Feedback) -> None:
        """Store the feedback of one prediction of one device; a later one (by ``ts``) wins.

        Feedback is keyed by (device id, prediction id): it labels only the inference
        the same device reported with that prediction id.

        Raises:
            NotFound: the app has no model named ``feedback.model`` (nothing stored).
            Unavailable: the database cannot be reached.
        """
        if self._unknown_models(app_id, (feedback.model,)):
            raise NotFound(
                f"feedback names model {feedback.model!r}, which this app does not have; "
                "send feedback only for models the check-in manifest lists (this feedback "
                "will never be accepted: drop it)."
            )
        self.store.upsert_feedback(app_id, feedback, datetime.fromtimestamp(self.clock(), UTC))

    def _split_unknown(
        self, app_id: str, events: Sequence[Any]
    ) -> tuple[Sequence[Any], tuple[RejectedModel, ...]]:
        """(the events of the app's models, the rejected events per unknown model)."""
        if events and isinstance(events[0], Mapping):
            models = [event["model"] for event in events]
        else:
            models = [event.model for event in events]
        distinct = set(models)
        unknown = self._unknown_models(app_id, distinct)
        if not unknown:
            return events, ()
        counts = Counter(model for model in models if model in unknown)
        rejected = tuple(RejectedModel(name, counts[name]) for name in sorted(unknown))
        kept = [e for e, model in zip(events, models, strict=True) if model not in unknown]
        return kept, rejected

    def _unknown_models(self, app_id: str, names: Iterable[str]) -> set[str]:
        """The names that are no model of the app (found names are cached for a TTL)."""
        names = list(names)
        now = self.clock()
        with self._models_lock:
            found_at = [self._models_seen.get((app_id, name)) for name in names]
        stale = [
            name
            for name, at in zip(names, found_at, strict=True)
            if at is None or now - at > self.model_cache_ttl_s
        ]
        if not stale:
            return set()
        known = self.store.known_models(app_id, stale)
        with self._models_lock:
            if len(self._models_seen) + len(known) > _MAX_CACHED_MODELS:
                self._models_seen.clear()
            self._models_seen.update({(app_id, name): now for name in known})
        return set(stale) - known

    def model_metrics(
        self, app_id: str, model: str, *, since: float | None = None, until: float | None = None
    ) -> list[MetricsRow]:
        """Aggregates of one model per (version, device class) for events in [since, until).

        Closed hours and days come from rollups (see ``_rollup``), the rest from events:
        counts and shares are exact; ``latency_p50_ms`` / ``latency_p95_ms`` are within
        ``RELATIVE_ERROR`` (1 %) of ``numpy.percentile`` over the window's latencies;
        ``mean_confidence`` is exact up to float rounding; feedback is joined as before.

        Args:
            app_id: the caller's app.
            model: the model name (it need not exist in the registry: telemetry may
                name models the registry has deleted).
            since: unix seconds, inclusive; None = from the start.
            until: unix seconds, exclusive; None = until now.

        Returns:
            One ``MetricsRow`` per group (see ``aggregate``).

        Raises:
            Unavailable: the database cannot be reached.
        """
        if since is None or until is None:
            known = self.store.time_range(app_id, model)
            if known is None:
                return []
            since = known[0] if since is None else since
            until = math.nextafter(known[1], math.inf) if until is None else until
        if until <= since:
            return []
        return self._series(app_id, model, [since, until])[0]

    def model_series(
        self, app_id: str, model: str, since: float, until: float, bucket_s: float
    ) -> list[list[MetricsRow]]:
        """``model_metrics`` of every bucket [since + i * bucket_s, ...) up to ``until``,
        in one read (the last bucket ends at ``until``).

        Each bucket's rows equal ``model_metrics(app_id, model, since=start, until=end)``.

        Raises:
            InvalidInput: ``bucket_s`` <= 0, ``until`` <= ``since``, or more than
                ``MAX_SERIES_BUCKETS`` buckets.
            Unavailable: the database cannot be reached.
        """
        return self._series(app_id, model, _edges(since, until, bucket_s))

    def feedback_labels(
        self, app_id: str, model: str, edges: Sequence[float]
    ) -> list[dict[tuple[int | None, str | None], tuple[int, int]]]:
        """Per cell [edges[i], edges[i + 1]): (correct, labelled) inferences per (version,
        device class) — the ``accuracy`` and ``feedback_count`` of ``model_metrics`` for
        that cell (groups without label feedback left out), from one read of only the
        devices that have label feedback.

        Raises:
            InvalidInput: fewer than two edges, or edges not ascending.
            Unavailable: the database cannot be reached.
        """
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise InvalidInput("feedback_labels needs at least two ascending edges.")
        result: list[dict[tuple[int | None, str | None], tuple[int, int]]] = [
            {} for _ in range(len(edges) - 1)
        ]
        labelled = self.store.labelled(app_id, model, edges[0], edges[-1], edges)
        if labelled is None:
            return result
        for cell, version, device_class, correct in zip(
            labelled.cells.tolist(),
            labelled.versions.to_pylist(),
            labelled.device_classes.to_pylist(),
            labelled.correct.tolist(),
            strict=True,
        ):
            seen = result[cell].get((version, device_class), (0, 0))
            result[cell][(version, device_class)] = (seen[0] + bool(correct), seen[1] + 1)
        return result

    def fleet(self, app_id: str, since: float, until: float) -> FleetSummary:
        """Devices per model version, variant, device class, app version and platform,
        sync failures and download outcomes of the app's events in [since, until).

        From the database (closed days and hours from rollups, see ``_fleet``), so it
        includes every stored batch (no Parquet export lag). A device counts under every
        value it reported in the window.

        Raises:
            InvalidInput: ``until`` <= ``since``.
            Unavailable: the database cannot be reached.
        """
        if until <= since:
            raise InvalidInput("the fleet window needs until > since.")
        pieces = list(plan([since, until], self.clock()))
        spans = [(p.span, int(p.since)) for p in pieces if p.span]
        stored = self.store.rollups(app_id, FLEET, since, until, read_ipc) if spans else {}
        missing = [key for key in spans if key not in stored]
        stored.update(self.store.build_fleet_rollups(app_id, missing))
        tables = [
            stored[(p.span, int(p.since))]
            if p.span
            else device_table(self.store.fleet_events(app_id, p.since, p.until))
            for p in pieces
        ]
        return summarise_fleet(tables, since, until)

    def model_window(
        self, app_id: str, model: str, since: float, until: float, bucket_s: float
    ) -> tuple[list[MetricsRow], list[list[MetricsRow]]]:
        """(``model_metrics`` of [since, until), ``model_series`` of it) from one read.

        The window's rows merge the same histograms and counters as the buckets', so they
        equal ``model_metrics(app_id, model, since=since, until=until)`` (mean confidence
        up to float rounding of its sum).

        Raises:
            InvalidInput, Unavailable: as ``model_series``.
        """
        rows = self._series(app_id, model, _edges(since, until, bucket_s), total=True)
        return rows[-1], rows[:-1]

    def _series(
        self, app_id: str, model: str, edges: list[float], *, total: bool = False
    ) -> list[list[MetricsRow]]:
        """Rows per cell [edges[i], edges[i + 1]): rollups, built when missing, + events.

        ``total``: one more cell at the end, the whole [edges[0], edges[-1]).
        """
        pieces = list(plan(edges, self.clock()))
        spans = [(p.span, int(p.since)) for p in pieces if p.span]
        stored = self.store.rollups(app_id, model, edges[0], edges[-1]) if spans else {}
        missing = [key for key in spans if key not in stored]
        stored.update(self.store.build_rollups(app_id, model, missing))
        cells = [Cell(edges[c], edges[c + 1], []) for c in range(len(edges) - 1)]
        for piece in pieces:
            if piece.span:
                cells[piece.cell].parts.append(stored[(piece.span, int(piece.since))])
            else:
                ts, events = self.store.timed_events(app_id, model, piece.since, piece.until)
                if len(events):
                    cell = np.zeros(len(ts), np.int64)
                    cells[piece.cell].parts.extend(summarise(events, cell).values())
        labelled = self.store.labelled(app_id, model, edges[0], edges[-1], edges)
        return metrics_rows(cells, labelled, total=total)


def _edges(since: float, until: float, bucket_s: float) -> list[float]:
    """The bucket edges of a series (the last bucket ends at ``until``).

    Raises:
        InvalidInput: ``bucket_s`` <= 0, ``until`` <= ``since``, or more than
            ``MAX_SERIES_BUCKETS`` buckets.
    """
    if bucket_s <= 0 or until <= since:
        raise InvalidInput("a series needs bucket_s > 0 and until > since.")
    count = math.ceil((until - since) / bucket_s)
    if count > MAX_SERIES_BUCKETS:
        raise InvalidInput(
            f"a series has at most {MAX_SERIES_BUCKETS} buckets ({count} asked); "
            "use a wider bucket."
        )
    return [since + i * bucket_s for i in range(count)] + [until]


def _stored_kinds(events: Sequence[Any]) -> Sequence[Any]:
    """The events that are rows of the event table (all but ``profile`` events)."""
    if not events:
        return events
    if isinstance(events[0], Mapping):
        kinds = [event["type"] for event in events]
    else:
        kinds = [event.type for event in events]
    if all(kind in STORED_EVENT_KINDS for kind in kinds):
        return events  # the usual batch: nothing to leave out
    return [e for e, kind in zip(events, kinds, strict=True) if kind in STORED_EVENT_KINDS]
