"""MonitorService: drift and accuracy of a model version from the fleet's stored sketches.

The question it answers: "has the world this version sees changed, and how accurate is it
probably now?" Devices' sketches are already merged per version x device class x app
version x hour by the sketch store (``add_sketches``); a report reads the hourly rows of
its window (``read_sketches``), sums them per group and tests each group with
``detect_drift`` against the version's reference profile (or the window before). Cheap by
construction: a 24-hour report of 10 device classes reads at most 240 rows, whatever the
number of devices.

Which version: the one asked for; else the model's production version; else the newest
version that sent sketches in the window. Its reference profile comes from the registry
(parsed once per version and kept: a version and its profile never change).

Realised accuracy comes from the telemetry aggregates (``TelemetryService.model_metrics``,
the one place that joins feedback labels to inferences), per device class: feedback rows
carry no app version, so a report grouped or filtered by app version shows the estimate
only and says why.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pocketml.errors import InvalidInput, NotFound
from pocketml.monitor._accuracy_report import (
    LEVEL,
    AccuracyPoint,
    AccuracyReport,
    Labels,
    group_accuracy,
    reference_accuracy,
)
from pocketml.monitor._detector import DEFAULT_ALPHA, MIN_CURRENT
from pocketml.monitor._health import (
    HealthReader,
    MetricReading,
    health_readers,
    health_readings,
)
from pocketml.monitor._labels import (
    fleet_labels,
    group_labels,
    labels_per_bucket,
    labels_per_class,
    missing_labels,
)
from pocketml.monitor._report import (
    DriftReport,
    GroupDrift,
    SeriesPoint,
    group_drift,
    series_point,
    window_sketch,
)
from pocketml.monitor._store import WINDOW_S, StoredSketch, read_sketches
from pocketml.monitor._windows import (
    DEFAULT_WINDOW_S,
    MAX_WINDOW_S,
    GroupKey,
    Merged,
    bucket_rows,
    bucket_width,
    check_group_by,
    group_rows,
    merge_rows,
)
from pocketml.registry import Registry
from pocketml.sketch import ReferenceProfile, Sketch
from pocketml.telemetry import TelemetryService

__all__ = ["MonitorService"]

logger = logging.getLogger(__name__)

_PROFILE_CACHE = 64
_TESTED_CACHE = 512  # group_drift results by content (profile, counts, n, noise, labels);
# each holds every block's histograms (~100 KB with 100 features): at most ~50 MB

Baseline = Literal["reference", "previous"]


@dataclass(frozen=True)
class _Scope:
    """What one report reads: the version, its profile, the window and the groups."""

    model: str
    version: int
    profile: ReferenceProfile
    since: int
    until: int
    group_by: tuple[str, ...]
    filters: Mapping[str, str]
    bucket_s: int
    profile_key: tuple[str, str, int, str] = ("", "", 0, "")


class MonitorService:
    """Drift and accuracy reports of a model's versions, from stored sketches and feedback.

    Args:
        registry: the open registry (versions, reference profiles, the database engine).
        telemetry: the open telemetry service (feedback accuracy).
        clock: the server's clock in unix seconds (tests pass a fixed one).
    """

    def __init__(
        self,
        registry: Registry,
        telemetry: TelemetryService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.telemetry = telemetry
        self.clock = clock
        self._profiles: OrderedDict[tuple[str, str, int, str], ReferenceProfile] = OrderedDict()
        self._lock = threading.Lock()
        self._tested: OrderedDict[tuple[object, ...], GroupDrift] = OrderedDict()

    # -- the reports ---------------------------------------------------------------------

    def drift(
        self,
        app_id: str,
        model: str,
        *,
        version: int | None = None,
        window_s: int = DEFAULT_WINDOW_S,
        until: float | None = None,
        device_class: str | None = None,
        app_version: str | None = None,
        group_by: Sequence[str] = ("device_class",),
        baseline: Baseline = "reference",
        series: bool = True,
    ) -> DriftReport:
        """Drift of a version over ``[until - window_s, until)``, for the fleet and per group.

        Args:
            app_id: the caller's app.
            model: the model's name.
            version: the version; None = production, else the newest with sketches.
            window_s: the window's length in seconds (1 hour to 90 days).
            until: the window's end, unix seconds (None = now).
            device_class, app_version: restrict the whole report to one of each.
            group_by: the group dimensions (``device_class``, ``app_version``; () = none).
            baseline: ``reference`` (the version's profile) or ``previous`` (the window
                of the same length just before, per group).
            series: False leaves the series out (``model_health`` does: it is most of a
                report's cost, one test of every block per bucket).

        Returns:
            A ``DriftReport``; the series (one point per bucket, at most 48) always tests
            against the reference profile.

        Raises:
            NotFound: no such model or version, no version to report on, or a version
                without a reference profile.
            InvalidInput: a bad window, group_by or baseline.
        """
        if baseline not in ("reference", "previous"):
            raise InvalidInput(f"baseline must be reference or previous; got {baseline!r}.")
        scope = self._scope(
            app_id, model, version, window_s, until, device_class, app_version, group_by
        )
        rows = self._read(app_id, scope, scope.since, scope.until)
        return self._drift_of(app_id, scope, rows, baseline, series=series)

    def _drift_of(
        self,
        app_id: str,
        scope: _Scope,
        rows: list[StoredSketch],
        baseline: Baseline,
        *,
        series: bool,
    ) -> DriftReport:
        """The drift report of a scope whose window's rows are read already."""
        window_s = scope.until - scope.since
        previous: dict[GroupKey, Merged] = {}
        fleet_before = self._empty(scope)
        if baseline == "previous":
            before = self._read(app_id, scope, scope.since - window_s, scope.since)
            previous = self._groups(scope, before)
            fleet_before = self._merge(scope, before)
        merged = self._groups(scope, rows)
        fleet = self._merge(scope, rows)
        groups = [
            self._group_drift(
                scope,
                total,
                baseline=(
                    None if baseline == "reference" else previous.get(key, self._empty(scope))
                ),
                labels=dict(key),
                baseline_noise_variance=previous.get(key, self._empty(scope)).noise_variance,
            )
            for key, total in merged.items()
        ]
        groups.sort(key=lambda g: (-g.n, sorted(g.labels.items())))
        return DriftReport(
            model=scope.model,
            version=scope.version,
            since=scope.since,
            until=scope.until,
            baseline=baseline,
            group_by=scope.group_by,
            filters=scope.filters,
            alpha=DEFAULT_ALPHA,
            bucket_s=scope.bucket_s,
            fleet=self._group_drift(
                scope,
                fleet,
                baseline=None if baseline == "reference" else fleet_before,
                baseline_noise_variance=fleet_before.noise_variance,
            ),
            groups=tuple(groups),
            series=self._drift_series(scope, rows) if series else (),
        )

    def accuracy(
        self,
        app_id: str,
        model: str,
        *,
        version: int | None = None,
        window_s: int = DEFAULT_WINDOW_S,
        until: float | None = None,
        device_class: str | None = None,
        app_version: str | None = None,
        group_by: Sequence[str] = ("device_class",),
        series: bool = True,
    ) -> AccuracyReport:
        """Estimated (from confidence) and realised (from labels) accuracy of a version.

        Arguments, version choice and errors as in ``drift``. Groups are those with
        sketches or labels in the window; realised accuracy needs labels, and is None with
        a reason when the report is grouped or filtered by app version.
        """
        scope = self._scope(
            app_id, model, version, window_s, until, device_class, app_version, group_by
        )
        rows = self._read(app_id, scope, scope.since, scope.until)
        return self._accuracy_of(app_id, scope, rows, series=series)

    def _accuracy_of(
        self, app_id: str, scope: _Scope, rows: list[StoredSketch], *, series: bool
    ) -> AccuracyReport:
        """The accuracy report of a scope whose window's rows are read already."""
        merged = self._groups(scope, rows)
        per_class = self._labels_per_class(app_id, scope, scope.since, scope.until)
        labels = group_labels(per_class, scope.group_by, scope.filters)
        none = missing_labels(scope.group_by, scope.filters)
        keys = sorted(set(merged) | set(labels))
        groups = [
            group_accuracy(
                scope.profile,
                self._sketch(scope, merged.get(key, self._empty(scope))),
                labels.get(key, none),
                group=dict(key),
            )
            for key in keys
        ]
        groups.sort(key=lambda g: (-g.n, -g.labelled, sorted(g.labels.items())))
        points = []
        buckets = self._buckets(scope, rows) if series else []
        per_bucket = (
            labels_per_bucket(
                self.telemetry,
                app_id,
                scope.model,
                scope.version,
                [start for start, _, _ in buckets] + [buckets[-1][1]],
                scope.filters.get("device_class"),
            )
            if buckets
            else []
        )
        for (start, end, total), bucket_labels in zip(buckets, per_bucket, strict=True):
            point = group_accuracy(
                scope.profile,
                self._sketch(scope, total),
                fleet_labels(bucket_labels, scope.filters),
            )
            points.append(
                AccuracyPoint(start, end, point.n, point.labelled, point.estimated, point.realised)
            )
        return AccuracyReport(
            model=scope.model,
            version=scope.version,
            since=scope.since,
            until=scope.until,
            group_by=scope.group_by,
            filters=scope.filters,
            level=LEVEL,
            bucket_s=scope.bucket_s,
            reference_accuracy=reference_accuracy(scope.profile),
            fleet=group_accuracy(
                scope.profile,
                self._sketch(scope, self._merge(scope, rows)),
                fleet_labels(per_class, scope.filters),
            ),
            groups=tuple(groups),
            series=tuple(points),
        )

    def model_health(
        self,
        app_id: str,
        model: str,
        *,
        now: float | None = None,
        window_s: float = WINDOW_S,
        group_by: Sequence[str] = ("device_class",),
    ) -> list[MetricReading]:
        """The health readings of a model's reported version over ``[now - window_s, now)``.

        Args:
            app_id, model: what to read.
            now: the window's end, unix seconds (None = the clock).
            window_s: seconds; the store keeps hours, so a shorter window reads the last
                hour (an alert rule of 5 minutes still gets an answer, not an error).
            group_by: the group dimensions, as in ``drift``.

        Returns:
            ``MetricReading``s (``pocketml.monitor.HEALTH_METRICS``) for the fleet, then per
            group; an empty list when the model has no version to report on or the version
            has no reference profile (nothing to compare with).

        Raises:
            NotFound: no such model.
            InvalidInput: a window over 90 days, or a bad group_by.
        """
        try:
            scope = self._scope(
                app_id, model, None, max(WINDOW_S, math.ceil(window_s)), now, None, None, group_by
            )
        except NotFound:
            self.registry.get_model(app_id, model)  # a missing model is the caller's error
            return []
        # One scope and one read of the window's rows for both reports.
        rows = self._read(app_id, scope, scope.since, scope.until)
        drift = self._drift_of(app_id, scope, rows, "reference", series=False)
        accuracy = self._accuracy_of(app_id, scope, rows, series=False)
        return health_readings(drift, accuracy)

    def health_readers(self) -> dict[str, HealthReader]:
        """One reader per health metric, ``reader(app_id, model, window_s, now)``, for an
        alert evaluator that asks metric by metric (see ``pocketml.monitor.health_readers``:
        the six readers of one model and window share one ``model_health`` call)."""
        return health_readers(self.model_health)

    # -- what a report reads ---------------------------------------------------------------

    def _scope(
        self,
        app_id: str,
        model: str,
        version: int | None,
        window_s: int,
        until: float | None,
        device_class: str | None,
        app_version: str | None,
        group_by: Sequence[str],
    ) -> _Scope:
        dims = check_group_by(group_by)
        if not WINDOW_S <= int(window_s) <= MAX_WINDOW_S:
            raise InvalidInput(f"window_s must be in [{WINDOW_S}, {MAX_WINDOW_S}]; got {window_s}.")
        # Up to now means everything received so far: a floor would drop the last second's
        # events (intake stamps a device's future events with their receive time).
        end = math.ceil(self.clock()) if until is None else int(until)
        since = end - int(window_s)
        self.registry.get_model(app_id, model)
        if version is None:
            version = self._default_version(app_id, model, since, end)
        info = self.registry.get_version(app_id, model, version)
        if info.reference_profile_sha256 is None:
            raise NotFound(
                f"version {version} of {model!r} has no reference profile, so there is "
                "nothing to compare its sketches with; push a build made by `pocketml build` "
                "(it writes profile.json)."
            )
        profile = self._profile(app_id, model, version, info.reference_profile_sha256)
        filters = {
            name: value
            for name, value in (("device_class", device_class), ("app_version", app_version))
            if value is not None
        }
        width = bucket_width(int(window_s))
        key = (app_id, model, version, info.reference_profile_sha256)
        return _Scope(model, version, profile, since, end, dims, filters, width, key)

    def _default_version(self, app_id: str, model: str, since: int, until: int) -> int:
        production = self.registry.list_versions(app_id, model, stage="production", limit=1)
        if production.items:
            return production.items[0].version
        rows = read_sketches(self.registry.store.engine, app_id, model, since=since, until=until)
        if rows:
            return max(row.key.version for row in rows)
        raise NotFound(
            f"{model!r} has no production version and no version sent sketches in the "
            "window; pass a version (e.g. version=1) or widen the window."
        )

    def _profile(self, app_id: str, model: str, version: int, sha256: str) -> ReferenceProfile:
        key = (app_id, model, version, sha256)
        with self._lock:
            cached = self._profiles.get(key)
            if cached is not None:
                self._profiles.move_to_end(key)
                return cached
        raw = self.registry.get_reference_profile(app_id, model, version)
        if raw is None:  # deleted between the two reads
            raise NotFound(f"version {version} of {model!r} has no reference profile.")
        profile = ReferenceProfile.from_dict(raw)
        with self._lock:
            self._profiles[key] = profile
            while len(self._profiles) > _PROFILE_CACHE:
                self._profiles.popitem(last=False)
        return profile

    def _read(self, app_id: str, scope: _Scope, since: int, until: int) -> list[StoredSketch]:
        rows = read_sketches(
            self.registry.store.engine,
            app_id,
            scope.model,
            since=since,
            until=until,
            version=scope.version,
            device_class=scope.filters.get("device_class"),
            app_version=scope.filters.get("app_version"),
        )
        size = scope.profile.layout.total
        kept = [row for row in rows if row.counts.size == size]
        if len(kept) < len(rows):  # rows of another layout would be a store bug: say so
            logger.warning(
                "%d sketch rows of %s v%d do not fit the profile's %d bins; left out",
                len(rows) - len(kept),
                scope.model,
                scope.version,
                size,
            )
        return kept

    def _labels_per_class(
        self, app_id: str, scope: _Scope, since: int, until: int
    ) -> dict[str, Labels]:
        return labels_per_class(
            self.telemetry,
            app_id,
            scope.model,
            scope.version,
            since,
            until,
            scope.filters.get("device_class"),
        )

    def _drift_series(self, scope: _Scope, rows: Sequence[StoredSketch]) -> tuple[SeriesPoint, ...]:
        """The fleet per bucket against the reference; a bucket below the detectors'
        minimum is not tested at all (its answer is known: not enough data)."""
        points = []
        for start, end, total in self._buckets(scope, rows):
            if total.n < MIN_CURRENT:
                points.append(
                    SeriesPoint(start, end, "not_enough_data", total.n, None, None, None, None)
                )
            else:
                tested = self._group_drift(scope, total)
                points.append(series_point(start, end, tested))
        return tuple(points)

    def _group_drift(
        self,
        scope: _Scope,
        total: Merged,
        *,
        baseline: Merged | None = None,
        labels: Mapping[str, str] | None = None,
        baseline_noise_variance: float = 0.0,
    ) -> GroupDrift:
        """``group_drift`` of a merged window (and baseline), remembered by content.

        The result is a pure function of the profile (by its sha256) and the merged counts,
        n, noise and events, so a closed window tested once (a page view, the series'
        older buckets, an alert's evaluation) is not tested again until its sketches
        change (new counts = a new key; nothing to invalidate). Bounded LRU.
        """
        key = (
            scope.profile_key,
            _content(total),
            None if baseline is None else _content(baseline),
            tuple(sorted((labels or {}).items())),
            baseline_noise_variance,
        )
        if scope.profile_key[3]:  # a scope built without a sha256 is never cached
            with self._lock:
                cached = self._tested.get(key)
                if cached is not None:
                    self._tested.move_to_end(key)
                    return cached
        result = group_drift(
            scope.profile,
            self._sketch(scope, total),
            baseline=None if baseline is None else self._sketch(scope, baseline),
            labels=labels,
            events=total.events,
            noise_variance=total.noise_variance,
            baseline_noise_variance=baseline_noise_variance,
        )
        if scope.profile_key[3]:
            with self._lock:
                self._tested[key] = result
                while len(self._tested) > _TESTED_CACHE:
                    self._tested.popitem(last=False)
        return result

    def fleet_series(
        self,
        app_id: str,
        model: str,
        *,
        version: int,
        window_s: int,
        until: int,
        step_s: int,
    ) -> list[tuple[int, int, GroupDrift]]:
        """The fleet's test in each ``step_s`` sub-window of ``[until - window_s, until)``
        (ending at ``until``), from one read of the window's sketches.

        Each entry equals ``drift(app_id, model, version=version, window_s=step_s,
        until=end, group_by=()).fleet`` for its sub-window; results are remembered by
        content (``_group_drift``), so the closed sub-windows of a page cost a lookup.

        Raises:
            NotFound, InvalidInput: as ``drift``.
        """
        scope = self._scope(app_id, model, version, window_s, until, None, None, ())
        if not WINDOW_S <= int(step_s) <= scope.until - scope.since:
            raise InvalidInput(f"step_s must be in [{WINDOW_S}, {window_s}]; got {step_s}.")
        rows = self._read(app_id, scope, scope.since, scope.until)
        buckets = bucket_rows(
            rows, scope.since, scope.until, int(step_s), scope.profile.layout.total
        )
        return [(start, end, self._group_drift(scope, total)) for start, end, total in buckets]

    # -- merging ----------------------------------------------------------------------------

    @staticmethod
    def _empty(scope: _Scope) -> Merged:
        return Merged.empty(scope.profile.layout.total)

    @staticmethod
    def _merge(scope: _Scope, rows: Iterable[StoredSketch]) -> Merged:
        return merge_rows(rows, scope.profile.layout.total)

    @staticmethod
    def _groups(scope: _Scope, rows: Iterable[StoredSketch]) -> dict[GroupKey, Merged]:
        return group_rows(rows, scope.group_by, scope.profile.layout.total)

    @staticmethod
    def _buckets(scope: _Scope, rows: Iterable[StoredSketch]) -> list[tuple[int, int, Merged]]:
        return bucket_rows(
            rows, scope.since, scope.until, scope.bucket_s, scope.profile.layout.total
        )

    @staticmethod
    def _sketch(scope: _Scope, total: Merged) -> Sketch:
        return window_sketch(scope.profile.reference, total.counts, total.n)


def _content(total: Merged) -> tuple[object, ...]:
    """A merged window's identity for the test cache (its counts by digest)."""
    counts = np.ascontiguousarray(total.counts, dtype=np.int64)
    digest = hashlib.blake2b(counts.tobytes(), digest_size=16).digest()
    return (digest, len(counts), total.n, total.noise_variance, total.events)
