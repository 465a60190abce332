"""What the learn pages draw: telemetry over time, and the drift and accuracy charts.

The telemetry page asks ``TelemetryService.model_window`` for the whole window and every
bucket (at most ``MAX_BUCKETS``) in one read: each is what ``model_metrics`` — the
function behind ``GET /v1/admin/models/{name}/metrics`` — answers for the same
``since``/``until``, so every number on the page is the API's. A line is one (version,
device class) group, exactly the API's grouping: percentiles of different versions
cannot be merged honestly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from pocketml.monitor import AccuracyPoint, FeatureReport, GroupDrift, SeriesPoint
from pocketml.server.console._format import duration, num, pct
from pocketml.server.console._svg import Series, histogram_pair, sparkline, time_series
from pocketml.telemetry import MetricsRow

__all__ = [
    "MAX_BUCKETS",
    "MAX_LINES",
    "TelemetryView",
    "accuracy_chart",
    "blocks_of",
    "bucket_width",
    "drift_series_charts",
    "feature_histogram",
    "feature_score_chart",
    "feature_spark",
    "telemetry_view",
]

MAX_BUCKETS = 30
"""The most points of a telemetry chart (each is one aggregate over its bucket)."""
MAX_LINES = 8
"""The most (version, device class) lines per chart: the groups with most inferences."""
_WIDTHS = (3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 3 * 86_400, 7 * 86_400)

MetricsWindow = Callable[[float, float, int], tuple[list[MetricsRow], list[list[MetricsRow]]]]


def bucket_width(window_s: float) -> int:
    """The narrowest bucket (1 h .. 7 days) that covers ``window_s`` in ``MAX_BUCKETS``."""
    return next((w for w in _WIDTHS if window_s / w <= MAX_BUCKETS), _WIDTHS[-1])


def _key(row: MetricsRow) -> str:
    version = "—" if row.version is None else f"v{row.version}"
    return f"{version} · {row.device_class or '(no class)'}"


@dataclass(frozen=True)
class TelemetryView:
    """The telemetry page of one model over ``[since, until)``.

    Attributes:
        rows: the API's groups over the whole window.
        charts: (heading, SVG or "no data" paragraph), in page order.
        bucket_s: seconds per point.
        hidden: groups left out of the charts (beyond ``MAX_LINES``).
    """

    since: float
    until: float
    bucket_s: int
    rows: list[MetricsRow]
    charts: list[tuple[str, Markup]]
    hidden: int


_CHARTS: tuple[tuple[str, str, Callable[[float], str], float | None], ...] = (
    ("Latency p95", "latency_p95_ms", duration, 0.0),
    ("Latency p50", "latency_p50_ms", duration, 0.0),
    ("Error rate", "error_rate", pct, 0.0),
    ("Cloud share", "cloud_share", pct, 0.0),
    ("Fallback share", "fallback_share", pct, 0.0),
    ("Accuracy (feedback)", "accuracy", pct, None),
)


def telemetry_view(window: MetricsWindow, since: float, until: float) -> TelemetryView:
    """Aggregate the window and its buckets through ``window(since, until, bucket_s)``
    (``TelemetryService.model_window`` bound to a model: the API's ``model_metrics`` of
    the window and of every bucket, from one read).

    Args:
        window: (the window's rows, the rows of each bucket).
        since: the window's start, unix seconds (a multiple of the bucket width).
        until: the window's end, unix seconds.
    """
    bucket_s = bucket_width(until - since)
    rows, series = window(since, until, bucket_s)
    shown = sorted(rows, key=lambda r: -r.count)[:MAX_LINES]
    keys = [_key(r) for r in shown]
    starts = [since + i * bucket_s for i in range(math.ceil((until - since) / bucket_s))]
    per_bucket = [{_key(r): r for r in bucket} for bucket in series]
    charts = []
    for heading, attribute, fmt, floor in _CHARTS:
        lines = [
            Series(
                key,
                [
                    (start + bucket_s / 2, _value(bucket.get(key), attribute))
                    for start, bucket in zip(starts, per_bucket, strict=True)
                ],
            )
            for key in keys
        ]
        title = f"{heading} per version and device class, {bucket_s // 3600} h buckets"
        charts.append((heading, time_series(title, lines, y_format=fmt, y_min=floor)))
    return TelemetryView(
        since=since,
        until=until,
        bucket_s=bucket_s,
        rows=rows,
        charts=charts,
        hidden=max(0, len(rows) - len(shown)),
    )


def _value(row: MetricsRow | None, attribute: str) -> float | None:
    if row is None:
        return None
    value = getattr(row, attribute)
    return None if value is None else float(value)


def _shares(counts: Sequence[int]) -> list[float | None]:
    total = sum(counts)
    return [c / total if total else None for c in counts]


def feature_spark(name: str, reference: Sequence[int], current: Sequence[int]) -> Markup:
    """A table cell's picture of one feature: the window's share per bin (blue) over the
    reference's (grey)."""
    return sparkline(
        f"{name}: share per bin, current over reference",
        _shares(current),
        reference=_shares(reference),
        y_format=pct,
    )


def feature_histogram(
    name: str, labels: Sequence[str], ref: Sequence[int], cur: Sequence[int]
) -> Markup:
    """Reference vs current shares per bin of one feature."""
    return histogram_pair(f"{name}: reference vs current share per bin", labels, ref, cur)


def drift_series_charts(points: Sequence[SeriesPoint]) -> list[tuple[str, Markup]]:
    """The drift report's series: drifted share, the top score and rows per bucket."""
    share = Series("drifted share", [(p.start, p.drifted_share) for p in points])
    score = Series("top score", [(p.start, p.top_score) for p in points])
    rows = Series("rows", [(p.start, float(p.n)) for p in points])
    return [
        (
            "Drifted share of features",
            time_series(
                "Drifted share of input features over time", [share], y_format=pct, y_min=0.0
            ),
        ),
        (
            "Top drift score",
            time_series(
                "Score of the most drifted feature over time", [score], y_format=num, y_min=0.0
            ),
        ),
        ("Rows", time_series("Rows scored per bucket", [rows], y_format=num, y_min=0.0)),
    ]


def accuracy_chart(points: Sequence[AccuracyPoint], reference: float | None) -> Markup:
    """Estimated and realised accuracy of the fleet per bucket (and the reference)."""
    estimated = Series(
        "estimated",
        [(p.start, p.estimated.value if p.estimated else None) for p in points],
    )
    realised = Series(
        "realised (feedback)",
        [(p.start, p.realised.value if p.realised else None) for p in points],
    )
    lines = [estimated, realised]
    if reference is not None and points:
        times = [p.start for p in points]
        lines.append(Series("reference split", [(min(times), reference), (max(times), reference)]))
    return time_series("Estimated and realised accuracy over time", lines, y_format=pct)


def blocks_of(group: GroupDrift) -> list[FeatureReport]:
    """Every tested block of a group, in the report's order (features most drifted first)."""
    blocks = [*group.features, *group.multivariate]
    return blocks + [b for b in (group.prediction, group.confidence) if b is not None]


def feature_score_chart(name: str, points: Sequence[tuple[float, FeatureReport | None]]) -> Markup:
    """One block's score per sub-window, with its threshold (the score at p == alpha)."""
    score = Series("score", [(t, None if b is None else b.score) for t, b in points])
    threshold = Series("threshold", [(t, None if b is None else b.threshold) for t, b in points])
    return time_series(f"{name}: drift score over time", [score, threshold], y_min=0.0)
