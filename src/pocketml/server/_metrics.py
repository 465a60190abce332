"""Prometheus metrics of one server process, for ``GET /metrics``.

Two kinds of numbers, gathered differently:

* **Request metrics** are counted as requests are answered: ``PocketMLApp.__call__``
  makes one ``ServerMetrics.observe`` call per request (the fast path included), which
  bumps a counter by method, route template and status and a latency histogram by
  method and route template. Labels are bounded by construction: the route is the
  template (``/v1/models/{name}/predict``), never the raw path; a path no route matches
  is ``(unmatched)``, a request the guard refuses ``(refused)``; a method outside the
  standard ones is ``OTHER``. Telemetry events stored ride on the same call.
* **State metrics** are read when Prometheus scrapes: the predict batchers' queue
  depths (live), and, from the database, the exporter's backlog and the model metrics
  of the telemetry aggregates (per app, model, version and device class: inferences,
  p95 latency, error rate, cloud share, realised accuracy over the last
  ``model_window_s``), and the firing alerts per app, model and severity. The database
  part is cached for ``cache_ttl_s`` so scrapes of several Prometheus servers cost one
  read. Device classes come from devices, so the
  model groups are capped at ``max_model_series`` (the busiest kept, the rest counted
  in ``pocketml_model_groups_dropped``).
* **Alert deliveries** are counted by outcome as the webhook loop of this process sends them.

Each app has its own ``CollectorRegistry``, never prometheus-client's global one: two
apps in one process (the tests, an embedding host) do not share or collide on metrics.
The numbers are per process; with several uvicorn workers run one worker per scrape
target (docs/operations.md "Prometheus" says why multiprocess mode is not used).
Measured in-process (benchmarks/metrics_overhead.py): the ``observe`` call adds about
2 us of CPU to a check-in answered 304.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pocketml.config import MetricsSettings
from pocketml.errors import PocketMLError, Unauthorized
from pocketml.server._state import ServerState

__all__ = ["REFUSED", "UNMATCHED", "ServerMetrics"]

logger = logging.getLogger(__name__)

REFUSED = "(refused)"
"""The route label of a request the request guard answered (431, 413, 415, 401)."""
UNMATCHED = "(unmatched)"
"""The route label of a request no route matched (404)."""

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From a 304 check-in (~20 us) to a slow cloud prediction or a package upload.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MODEL_LABELS = ("app", "model", "version", "device_class")
_DELIVERY_OUTCOMES = ("delivered", "retry", "dead")


class ServerMetrics:
    """The metrics of one app, in a registry of its own.

    Building it does no I/O; ``watch(state, token)`` (in the lifespan) adds the state
    metrics and sets the scrape token.

    Args:
        options: ``settings.server.metrics``.
    """

    def __init__(self, options: MetricsSettings) -> None:
        self.options = options
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "pocketml_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "pocketml_http_request_duration_seconds",
            "Time from the request's arrival to its answer, by method and route template.",
            ("method", "route"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._events = Counter(
            "pocketml_telemetry_events_ingested",
            "Telemetry events stored by this process (duplicates and unknown models not counted).",
            registry=self.registry,
        )
        self._deliveries = Counter(
            "pocketml_alert_webhook_deliveries",
            "Webhook delivery attempts of alert events by this process, by outcome: "
            "delivered, retry (scheduled again) or dead (attempts exhausted).",
            ("outcome",),
            registry=self.registry,
        )
        for outcome in _DELIVERY_OUTCOMES:  # present at 0 before the first delivery
            self._deliveries.labels(outcome)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._token: bytes | None = None
        self._collector: _StateCollector | None = None

    def observe(
        self, method: str, route: str, status: int, seconds: float, events: int = 0
    ) -> None:
        """Count one answered request (called on the event loop, once per request).

        Args:
            method: the request method (any outside the standard ones is ``OTHER``).
            route: the route template, ``UNMATCHED`` or ``REFUSED``.
            status: the answer's status.
            seconds: time from arrival to answer.
            events: telemetry events the request stored.
        """
        if method not in _METHODS:  # before the lookup: a client's method never adds a key
            method = "OTHER"
        key = (method, route, status)
        pair = self._children.get(key)
        if pair is None:
            pair = (
                self._requests.labels(method, route, str(status)),
                self._latency.labels(method, route),
            )
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)
        if events:
            self._events.inc(events)

    def count_delivery(self, outcome: str) -> None:
        """Count one webhook attempt (called by the alert service's delivery loop)."""
        if outcome in _DELIVERY_OUTCOMES:
            self._deliveries.labels(outcome).inc()

    def watch(self, state: ServerState, token: str) -> None:
        """Report ``state``'s metrics too, and accept scrapes bearing ``token``."""
        self.unwatch()
        self._token = token.encode()
        self._collector = _StateCollector(state, self.options)
        self.registry.register(self._collector)

    def unwatch(self) -> None:
        """Stop reading the state (at shutdown); scrapes are refused from now on."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None
        self._token = None

    def render(self, token: str | None) -> bytes:
        """The exposition text, for a scraper that sent ``token``.

        Raises:
            Unauthorized: no token, or not the metrics token (401).
        """
        expected = self._token
        if expected is None or token is None or not hmac.compare_digest(token.encode(), expected):
            raise Unauthorized(
                "GET /metrics needs the metrics token: send Authorization: Bearer <token> "
                "with the token of POCKETML_SERVER__METRICS__TOKEN (by default the file "
                "<home>/metrics.token); got " + ("no token." if token is None else "another token.")
            )
        return generate_latest(self.registry)


@dataclass
class _Snapshot:
    """The database part of a scrape, reused for ``cache_ttl_s``."""

    taken_at: float
    families: list[Metric] = field(default_factory=list)
    app_names: dict[str, str] = field(default_factory=dict)


class _StateCollector(Collector):
    """Reads the server's state at scrape time (prometheus-client's custom collector)."""

    def __init__(self, state: ServerState, options: MetricsSettings) -> None:
        self.state = state
        self.options = options
        self._lock = threading.Lock()  # one scrape reads the database, the others wait
        self._snapshot: _Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.time()
            snapshot = self._snapshot
            if snapshot is None or now - snapshot.taken_at >= self.options.cache_ttl_s:
                snapshot = self._snapshot = self._read_database(now)
        yield from snapshot.families
        queue = GaugeMetricFamily(
            "pocketml_predict_queue_depth",
            "Cloud predictions waiting for a micro-batch, per app and model.",
            labels=("app", "model"),
        )
        for (app_id, model), depth in sorted(self.state.serving.queue_depths().items()):
            queue.add_metric((snapshot.app_names.get(app_id, app_id), model), depth)
        yield queue

    def _read_database(self, now: float) -> _Snapshot:
        up = GaugeMetricFamily(
            "pocketml_metrics_database_up",
            "1 when the last read of the model metrics and the exporter backlog succeeded.",
        )
        snapshot = _Snapshot(taken_at=now)
        try:
            snapshot.app_names = {app.id: app.name for app in self.state.registry.list_apps()}
            snapshot.families.extend(self._exporter_lag(now))
            models = list(self._models(snapshot.app_names))
            snapshot.families.extend(self._model_metrics(models, now))
            snapshot.families.extend(self._model_health(models, now))
            snapshot.families.append(self._firing_alerts(snapshot.app_names))
        except PocketMLError as exc:  # a scrape still answers: the request metrics stand
            logger.warning("metrics: reading the database failed: %s", exc)
            snapshot.families.clear()
            up.add_metric((), 0)
        else:
            up.add_metric((), 1)
        snapshot.families.append(up)
        return snapshot

    def _exporter_lag(self, now: float) -> Iterable[Metric]:
        exporter = self.state.telemetry.exporter
        if exporter is None:
            return []
        chunks, age = exporter.backlog(now)
        backlog = GaugeMetricFamily(
            "pocketml_telemetry_export_backlog_chunks",
            "Telemetry chunks in the database not yet exported to Parquet.",
            value=chunks,
        )
        lag = GaugeMetricFamily(
            "pocketml_telemetry_export_lag_seconds",
            "Age of the oldest telemetry chunk not yet exported to Parquet (0: none).",
            value=age,
        )
        return [backlog, lag]

    def _firing_alerts(self, app_names: dict[str, str]) -> Metric:
        firing = GaugeMetricFamily(
            "pocketml_alerts_firing",
            "Alerts in the firing state, per app, model and severity (docs/alerts.md).",
            labels=("app", "model", "severity"),
        )
        alerts = self.state.alerts
        for app_id, model, severity, count in [] if alerts is None else alerts.firing_counts():
            firing.add_metric((app_names.get(app_id, app_id), model, severity), count)
        return firing

    def _models(self, app_names: dict[str, str]) -> Iterator[tuple[str, str, str]]:
        """(app id, app name, model name) of every model of every app, page by page."""
        for app_id, app_name in app_names.items():
            offset = 0
            while True:
                page = self.state.registry.list_models(app_id, limit=1000, offset=offset)
                for model in page.items:
                    yield app_id, app_name, model.name
                offset += len(page.items)
                if not page.items or offset >= page.total:
                    break

    def _model_health(self, models: list[tuple[str, str, str]], now: float) -> list[Metric]:
        """Drift and label-free accuracy per version x device class, from the sketches of
        the last hour (``MonitorService.model_health``: the numbers alert rules watch),
        capped like the telemetry gauges (``max_model_series``, the most rows first).
        Models whose version has no reference profile have none."""
        window = "over the last hour of device sketches"
        families = {
            "drift_share": GaugeMetricFamily(
                "pocketml_model_drift_share",
                f"Share of monitored input features that drifted {window} (docs/monitoring.md).",
                labels=_MODEL_LABELS,
            ),
            "psi_max": GaugeMetricFamily(
                "pocketml_model_psi_max",
                f"Largest PSI over the input features that drifted {window} (0: none).",
                labels=_MODEL_LABELS,
            ),
            "accuracy_estimated": GaugeMetricFamily(
                "pocketml_model_accuracy_estimated",
                f"Label-free accuracy estimate from the confidence histogram {window}.",
                labels=_MODEL_LABELS,
            ),
        }
        groups: dict[tuple[str, ...], dict[str, tuple[float, int]]] = {}
        for app_id, app_name, model in models:
            for reading in self.state.monitor.model_health(app_id, model, now=now):
                device_class = reading.labels.get("device_class")
                if reading.metric not in families or reading.value is None or device_class is None:
                    continue  # the fleet's own reading is the API's, not a series
                version = reading.labels.get("version", "")
                key = (app_name, model, version, device_class or "unknown")
                groups.setdefault(key, {})[reading.metric] = (reading.value, reading.n)
        busiest = sorted(groups.items(), key=lambda g: -max(n for _, n in g[1].values()))
        for group, values in busiest[: self.options.max_model_series]:
            for metric, (value, _) in values.items():
                families[metric].add_metric(group, value)
        return list(families.values())

    def _model_metrics(self, models: list[tuple[str, str, str]], now: float) -> list[Metric]:
        telemetry = self.state.telemetry
        since = now - self.options.model_window_s
        groups: list[tuple[tuple[str, ...], Any]] = []
        for app_id, app_name, model in models:
            for row in telemetry.model_metrics(app_id, model, since=since):
                version = "" if row.version is None else str(row.version)
                labels = (app_name, model, version, row.device_class or "unknown")
                groups.append((labels, row))
        groups.sort(key=lambda group: -(group[1].count + group[1].errors))
        kept, dropped = (
            groups[: self.options.max_model_series],
            groups[self.options.max_model_series :],
        )
        return [*_model_families(kept, self.options.model_window_s), _dropped(len(dropped))]


def _model_families(groups: list[tuple[tuple[str, ...], Any]], window_s: float) -> list[Metric]:
    """The model gauges of ``groups`` ((labels, MetricsRow) pairs)."""
    window = f" over the last {window_s:g} s"
    inferences = GaugeMetricFamily(
        "pocketml_model_inferences", "Inference events" + window + ".", labels=_MODEL_LABELS
    )
    p95 = GaugeMetricFamily(
        "pocketml_model_latency_p95_seconds",
        "95th percentile of reported inference latency" + window + ".",
        labels=_MODEL_LABELS,
    )
    errors = GaugeMetricFamily(
        "pocketml_model_error_rate",
        "errors / (inferences + errors)" + window + ".",
        labels=_MODEL_LABELS,
    )
    cloud = GaugeMetricFamily(
        "pocketml_model_cloud_share",
        "Share of inferences answered by the cloud" + window + ".",
        labels=_MODEL_LABELS,
    )
    accuracy = GaugeMetricFamily(
        "pocketml_model_accuracy",
        "Realised accuracy against label feedback" + window + " (absent without labels).",
        labels=_MODEL_LABELS,
    )
    for labels, row in groups:
        inferences.add_metric(labels, row.count)
        if row.latency_p95_ms is not None:
            p95.add_metric(labels, row.latency_p95_ms / 1000.0)
        if row.error_rate is not None:
            errors.add_metric(labels, row.error_rate)
        if row.cloud_share is not None:
            cloud.add_metric(labels, row.cloud_share)
        if row.accuracy is not None:
            accuracy.add_metric(labels, row.accuracy)
    return [inferences, p95, errors, cloud, accuracy]


def _dropped(count: int) -> Metric:
    return GaugeMetricFamily(
        "pocketml_model_groups_dropped",
        "Model groups (app, model, version, device class) left out of the model metrics "
        "by POCKETML_SERVER__METRICS__MAX_MODEL_SERIES (the least busy first).",
        value=count,
    )
