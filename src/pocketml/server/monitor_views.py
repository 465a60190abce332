"""How the monitor's answers look to people: tables and a PNG of the drift report.

Shared by ``pocketml monitor`` (the CLI) and ``pocketml demo`` (chapter 9), which both hold
the admin API's answers (``DriftReportPublic`` / ``AccuracyReportPublic``). Tables are
fitted to the terminal (``pocketml._tables``: names are never cut, the least important
columns go first at 80 columns and the caption says which). The PNG draws reference vs
current histograms (shares per bin) of the most drifted features with matplotlib's Agg
backend (no display needed; matplotlib comes with ``pocketml[build]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from pocketml._tables import Column, fitted_table
from pocketml.errors import InvalidInput, MissingDependencyError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from pocketml.server.schemas_monitor import (
        AccuracyIntervalPublic,
        AccuracyReportPublic,
        DriftReportPublic,
        FeatureDriftPublic,
        GroupAccuracyPublic,
        GroupDriftPublic,
    )

__all__ = ["accuracy_table", "drift_tables", "plot_histograms"]

_STATE = {"drift": "DRIFT", "no_drift": "no drift", "not_enough_data": "not enough data"}
_ACCURACY_STATE = {"consistent": "consistent", "concept_drift": "CONCEPT DRIFT"}


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def _group(labels: dict[str, str]) -> str:
    return " ".join(value or "(none)" for value in labels.values()) or "fleet"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _verdict(group: GroupDriftPublic) -> str:
    if group.state == "not_enough_data":
        return f"not enough data ({group.n:,} rows)"
    share = f"{_share(group.drifted_share)} of features drifted"
    return f"{_STATE[group.state]}: {share}, {group.n:,} rows"


def drift_tables(report: DriftReportPublic, width: int) -> list[Table]:
    """The fleet's blocks (most drifted first) and one row per group, fitted to ``width``."""
    fleet = report.fleet
    blocks: list[FeatureDriftPublic] = [*fleet.features, *fleet.multivariate]
    blocks += [b for b in (fleet.prediction, fleet.confidence) if b is not None]
    title = (
        f"{report.model} v{report.version}, {_when(report.since)} to {_when(report.until)} UTC "
        f"vs {report.baseline}: {_verdict(fleet)}"
    )
    features = fitted_table(
        title,
        [
            Column("block", is_name=True),
            Column("method", priority=3),
            Column("score", "right"),
            Column("threshold", "right", priority=2),
            Column("p-value", "right", priority=1),
            Column("decision", is_name=True),
        ],
        [
            (b.name, b.method, _num(b.score), _num(b.threshold), _num(b.p_value), _STATE[b.state])
            for b in blocks
        ],
        width,
    )
    tables = [features]
    if report.group_by:
        groups = fitted_table(
            f"per {' x '.join(report.group_by)}",
            [
                Column(" x ".join(report.group_by), is_name=True),
                Column("rows", "right"),
                Column("decision", is_name=True),
                Column("drifted", "right"),
                Column("top feature", is_name=True, priority=1),
            ],
            [
                (
                    _group(dict(g.labels)),
                    f"{g.n:,}",
                    _STATE[g.state],
                    _share(g.drifted_share),
                    next((f.name for f in g.features if f.state == "drift"), "-"),
                )
                for g in report.groups
            ],
            width,
        )
        tables.append(groups)
    return tables


def _interval(value: AccuracyIntervalPublic | None) -> str:
    if value is None:
        return "-"
    return f"{value.value * 100:.1f}% ({value.low * 100:.1f}-{value.high * 100:.1f})"


def _accuracy_state(group: GroupAccuracyPublic) -> str:
    if group.state in _ACCURACY_STATE:
        return _ACCURACY_STATE[group.state]
    if group.estimated is None:
        return "too few rows" if group.n else "no rows"
    return "no labels"


def accuracy_table(report: AccuracyReportPublic, width: int) -> Table:
    """Estimated vs realised accuracy per group (the fleet first), fitted to ``width``."""
    reference = (
        "-" if report.reference_accuracy is None else f"{report.reference_accuracy * 100:.1f}%"
    )
    groups = [report.fleet, *report.groups] if report.group_by else [report.fleet]
    return fitted_table(
        f"{report.model} v{report.version}, {_when(report.since)} to {_when(report.until)} UTC; "
        f"reference accuracy {reference}; {report.level:.0%} intervals",
        [
            Column("group", is_name=True),
            Column("rows", "right", priority=2),
            Column("estimated", "right"),
            Column("labels", "right", priority=1),
            Column("realised", "right"),
            Column("state", wraps=True),
        ],
        [
            (
                "fleet" if g is report.fleet else _group(dict(g.labels)),
                f"{g.n:,}",
                _interval(g.estimated),
                f"{g.labelled:,}",
                _interval(g.realised),
                _accuracy_state(g),
            )
            for g in groups
        ],
        width,
    )


def plot_histograms(report: DriftReportPublic, path: Path, top: int = 4) -> Path:
    """Write a PNG of reference vs current shares per bin for the ``top`` most drifted
    features of the fleet (tested ones first).

    Raises:
        MissingDependencyError: matplotlib is not installed.
        InvalidInput: the file cannot be written there.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "build", "monitor drift --plot") from exc
    features = list(report.fleet.features[:top]) or list(report.fleet.multivariate[:top])
    count = max(len(features), 1)
    figure, axes = plt.subplots(count, 1, figsize=(9, 3.2 * count), squeeze=False)
    for axis, feature in zip(axes[:, 0], features, strict=False):
        _draw(axis, feature)
    if not features:
        axes[0, 0].text(0.5, 0.5, "no feature to draw", ha="center", va="center")
    figure.suptitle(f"{report.model} v{report.version}: reference vs current")
    figure.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    except OSError as exc:  # a user's path, not a pocketml bug
        raise InvalidInput(
            f"cannot write the plot to {path}: {exc.strerror or exc}. Pass --plot a path in "
            "a writable folder."
        ) from exc
    finally:
        plt.close(figure)
    return path


def _draw(axis: Axes, feature: FeatureDriftPublic) -> None:
    histogram = feature.histogram
    positions = range(len(histogram.labels))
    for counts, label, offset in (
        (histogram.reference, "reference", -0.2),
        (histogram.current, "current", 0.2),
    ):
        total = sum(counts) or 1
        axis.bar([p + offset for p in positions], [c / total for c in counts], 0.4, label=label)
    axis.set_xticks(list(positions), _short(histogram.labels), rotation=90, fontsize=6)
    axis.set_ylabel("share")
    axis.set_title(
        f"{feature.name}: {_STATE[feature.state]} ({feature.method} {_num(feature.score)})",
        fontsize=9,
    )
    axis.legend(fontsize=7)


def _short(labels: Sequence[str]) -> list[str]:
    return [label if len(label) <= 24 else label[:23] + "…" for label in labels]
