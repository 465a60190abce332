"""Feedback labels of a version, per device class, from the telemetry aggregates.

Realised accuracy needs labels joined to their inferences; ``TelemetryService.model_metrics``
is the one place that joins them (per version x device class), so the accuracy report reads
its ``feedback_count`` and ``accuracy`` instead of joining again. Feedback rows carry a
device class but no app version: a report grouped or filtered by app version gets no labels
and says why (``missing_labels``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pocketml.monitor._accuracy_report import Labels
from pocketml.monitor._windows import GroupKey
from pocketml.telemetry import TelemetryService

__all__ = ["fleet_labels", "group_labels", "labels_per_class", "missing_labels"]

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
    result: dict[str, Labels] = {}
    for row in telemetry.model_metrics(app_id, model, since=since, until=until):
        name = row.device_class or ""
        if row.version != version or not row.feedback_count or row.accuracy is None:
            continue
        if device_class is not None and name != device_class:
            continue
        result[name] = Labels(round(row.accuracy * row.feedback_count), row.feedback_count)
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
