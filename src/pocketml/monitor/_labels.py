"""Feedback labels of a version, per device class, from the telemetry aggregates.

Realised accuracy needs labels joined to their inferences; ``TelemetryService`` is the one
place that joins them (per version x device class): the accuracy report reads
``feedback_labels``, the ``feedback_count`` and ``accuracy`` of ``model_metrics`` without
its other metrics, for the window and every bucket of the series in one read. Feedback rows carry a
device class but no app version: a report grouped or filtered by app version gets no labels
and says why (``missing_labels``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pocketml.monitor._accuracy_report import Labels
from pocketml.monitor._windows import GroupKey
from pocketml.telemetry import TelemetryService

__all__ = [
    "fleet_labels",
    "group_labels",
    "labels_per_bucket",
    "labels_per_class",
    "missing_labels",
]

_NO_APP_VERSION = (
    "feedback labels carry no app version; group by device_class (or nothing) and drop the "
    "app_version filter to see realised accuracy"
)


def _has_app_version(group_by: Sequence[str], filters: Mapping[str, str]) -> bool:
    return "app_version" in group_by or "app_version" in filters


def labels_per_class(
    telemetry: TelemetryService,
    app_id: str,
    model: str,
    version: int,
    since: int,
    until: int,
    device_class: str | None = None,
) -> dict[str, Labels]:
    """Labels of ``version``'s inferences in ``[since, until)`` per device class (``""`` for
    devices that sent none), only ``device_class`` when given."""
    return labels_per_bucket(telemetry, app_id, model, version, [since, until], device_class)[0]


def labels_per_bucket(
    telemetry: TelemetryService,
    app_id: str,
    model: str,
    version: int,
    edges: Sequence[int],
    device_class: str | None = None,
) -> list[dict[str, Labels]]:
    """``labels_per_class`` of every bucket [edges[i], edges[i + 1]), from one read (the
    feedback counts of ``TelemetryService.model_metrics``, without its other metrics)."""
    result: list[dict[str, Labels]] = []
    for cell in telemetry.feedback_labels(app_id, model, edges):
        labels: dict[str, Labels] = {}
        for (row_version, row_class), (correct, total) in sorted(
            cell.items(), key=lambda item: item[0][1] or ""
        ):
            name = row_class or ""
            if row_version != version or not total:
                continue
            if device_class is not None and name != device_class:
                continue
            labels[name] = Labels(correct, total)
        result.append(labels)
    return result


def missing_labels(group_by: Sequence[str], filters: Mapping[str, str]) -> Labels:
    """What a group without labels gets: none, with a reason when none could exist."""
    return Labels(reason=_NO_APP_VERSION) if _has_app_version(group_by, filters) else Labels()


def group_labels(
    per_class: Mapping[str, Labels], group_by: Sequence[str], filters: Mapping[str, str]
) -> dict[GroupKey, Labels]:
    """The labels per report group (by device class, or one group when not grouped)."""
    if _has_app_version(group_by, filters):
        return {}
    groups: dict[GroupKey, Labels] = {}
    for device_class, labels in per_class.items():
        key: GroupKey = (("device_class", device_class),) if group_by else ()
        seen = groups.get(key, Labels())
        groups[key] = Labels(seen.correct + labels.correct, seen.total + labels.total)
    return groups


def fleet_labels(per_class: Mapping[str, Labels], filters: Mapping[str, str]) -> Labels:
    """Every device class's labels together."""
    if "app_version" in filters:
        return missing_labels((), filters)
    return Labels(
        sum(x.correct for x in per_class.values()), sum(x.total for x in per_class.values())
    )
