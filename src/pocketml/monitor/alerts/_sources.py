"""Where the numbers come from: ``metric name -> reader(app_id, model, window_s, now)``.

A reader returns one ``MetricReading`` per group it can tell apart (the telemetry readers:
one per version x device class), each with the number of observations behind it, so a
rule can refuse to judge thin data. ``value=None`` means "nothing to say"; the state
machine then changes nothing.

``MetricSources`` is the registry the evaluator asks. ``telemetry_sources(store)`` gives
the readers built on ``pocketml.telemetry``'s aggregates (latency p95, error rate, fallback
and cloud share, realised accuracy and its fall from the previous window); the drift and
label-free accuracy readers (``MonitorService.health_readers``: drift share, PSI, the
estimate and the drops from the version's reference accuracy) are registered by the server
at start-up, so this package never depends on the monitor's service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from pocketml.errors import NotFound
from pocketml.monitor._health import HealthReader, MetricReading
from pocketml.telemetry import MetricsRow, TelemetryStore, aggregate_events

__all__ = [
    "MetricReader",
    "MetricReading",
    "MetricSources",
    "TelemetryMetrics",
    "telemetry_sources",
]


MetricReader = HealthReader
"""Reads one metric of one model over ``[now - window_s, now)``:
``reader(app_id, model, window_s, now) -> list[MetricReading]`` (one type with the
monitor's model-health readers)."""


class MetricSources:
    """The registry of metric readers, filled at start-up, read by the evaluator."""

    def __init__(self, readers: dict[str, MetricReader] | None = None) -> None:
        self._readers: dict[str, MetricReader] = dict(readers or {})

    def register(self, metric: str, reader: MetricReader) -> None:
        """Read ``metric`` with ``reader`` from now on (replacing any earlier one)."""
        self._readers[metric] = reader

    def register_all(self, readers: dict[str, MetricReader]) -> None:
        """``register`` each pair of ``readers``."""
        self._readers.update(readers)

    def names(self) -> list[str]:
        """The metrics that have a reader, sorted."""
        return sorted(self._readers)

    def read(
        self, metric: str, app_id: str, model: str, window_s: float, now: float
    ) -> list[MetricReading]:
        """The readings of ``metric``.

        Raises:
            NotFound: no reader is registered for ``metric``.
        """
        reader = self._readers.get(metric)
        if reader is None:
            raise NotFound(
                f"no source reads metric {metric!r} on this server (readable: "
                f"{', '.join(self.names()) or 'none'}); its rules wait for one."
            )
        return reader(app_id, model, window_s, now)


def _labels(row: MetricsRow) -> dict[str, str]:
    return {
        "version": "" if row.version is None else str(row.version),
        "device_class": row.device_class or "",  # as the sketch store spells "none sent"
    }


class TelemetryMetrics:
    """The telemetry aggregates per version x device class, read once per window.

    Every telemetry metric of one model and window comes from the same aggregation, so an
    evaluation pass over seven rules of one model reads its events once: the last
    ``(app, model, since, until)`` answers are kept (a small bounded memo).

    Args:
        store: the telemetry store (``TelemetryService.store``).
        memo_size: aggregations kept.
    """

    def __init__(self, store: TelemetryStore, *, memo_size: int = 64) -> None:
        self.store = store
        self.memo_size = memo_size
        self._memo: dict[tuple[str, str, float, float], list[MetricsRow]] = {}
        self._lock = threading.Lock()

    def rows(self, app_id: str, model: str, since: float, until: float) -> list[MetricsRow]:
        """``aggregate_events`` of the model's events in [since, until)."""
        key = (app_id, model, since, until)
        with self._lock:
            cached = self._memo.get(key)
        if cached is not None:
            return cached
        rows = aggregate_events(self.store.events(app_id, model, since, until))
        with self._lock:
            if len(self._memo) >= self.memo_size:
                self._memo.clear()
            self._memo[key] = rows
        return rows

    def reader(
        self,
        metric: str,
        value: Callable[[MetricsRow], float | None],
        n: Callable[[MetricsRow], int],
    ) -> MetricReader:
        """A reader of one column of the aggregates."""

        def read(app_id: str, model: str, window_s: float, now: float) -> list[MetricReading]:
            rows = self.rows(app_id, model, now - window_s, now)
            return [MetricReading(metric, value(row), n(row), _labels(row)) for row in rows]

        return read

    def accuracy_fall(
        self, app_id: str, model: str, window_s: float, now: float
    ) -> list[MetricReading]:
        """Realised accuracy of the previous window minus this window's, per group.

        ``n`` is the smaller label count of the two windows: a drop judged on 500 labels
        against 3 is judged on 3.
        """
        current = self.rows(app_id, model, now - window_s, now)
        before = {
            (r.version, r.device_class): r
            for r in self.rows(app_id, model, now - 2 * window_s, now - window_s)
        }
        readings = []
        for row in current:
            base = before.get((row.version, row.device_class))
            if base is None or base.accuracy is None or row.accuracy is None:
                readings.append(MetricReading("accuracy_realised_fall", None, 0, _labels(row)))
                continue
            n = min(base.feedback_count, row.feedback_count)
            drop = base.accuracy - row.accuracy
            readings.append(MetricReading("accuracy_realised_fall", drop, n, _labels(row)))
        return readings


def _inferences(row: MetricsRow) -> int:
    return row.count


def telemetry_sources(store: TelemetryStore) -> dict[str, MetricReader]:
    """The readers built on the telemetry aggregates, by metric name."""
    metrics = TelemetryMetrics(store)
    columns: Iterable[tuple[str, Callable[[MetricsRow], float | None], Callable[[MetricsRow], int]]]
    columns = (
        ("latency_p95_ms", lambda r: r.latency_p95_ms, _inferences),
        ("error_rate", lambda r: r.error_rate, lambda r: r.count + r.errors),
        ("fallback_share", lambda r: r.fallback_share, _inferences),
        ("cloud_share", lambda r: r.cloud_share, _inferences),
        ("accuracy_realised", lambda r: r.accuracy, lambda r: r.feedback_count),
    )
    readers: dict[str, MetricReader] = {
        name: metrics.reader(name, value, n) for name, value, n in columns
    }
    readers["accuracy_realised_fall"] = metrics.accuracy_fall
    return readers
