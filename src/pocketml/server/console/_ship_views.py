"""What the ship pages show, built from the services' frozen values (no HTTP, no SQL).

Each function turns what a service returned into plain rows for a template: the
overview's per-model numbers, a version's metrics and lineage, the variants as a
format x precision grid, the schema as tables, two versions side by side. Numbers stay
numbers here (the templates format them with ``_format``'s filters), except in the
free-form dicts (metrics, params) whose values are formatted as they are flattened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pocketml.delivery import AuditEntry, Experiment, Rollout
from pocketml.registry import VariantInfo, VersionInfo
from pocketml.server.console._format import NO_VALUE, num
from pocketml.telemetry import MetricsRow

__all__ = [
    "CompareRow",
    "OverviewRow",
    "Traffic",
    "VariantCell",
    "audit_link",
    "compare_metrics",
    "compare_sizes",
    "flatten",
    "lineage",
    "rollout_share",
    "schema_tables",
    "step_times",
    "traffic",
    "variant_grid",
]

_MAX_DEPTH = 3
_MAX_ITEMS = 200


def _scalar(value: Any) -> str:
    if value is None or value == "" or value == [] or value == ():
        return NO_VALUE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return num(value)
    if isinstance(value, list | tuple):
        shown = ", ".join(_scalar(v) for v in value[:12])
        return f"{shown}, … ({len(value):,} in all)" if len(value) > 12 else shown
    return str(value)


def flatten(
    values: Mapping[str, Any] | None, prefix: str = "", depth: int = 0
) -> list[tuple[str, str]]:
    """A free-form dict (metrics, params) as ``(label, text)`` rows for a table.

    Nested dicts become dotted labels (``onnx · accuracy``) up to three levels; numbers
    keep 3 significant digits; lists print their first items. At most 200 rows.
    """
    rows: list[tuple[str, str]] = []
    for key, value in (values or {}).items():
        label = f"{prefix} · {key}" if prefix else str(key)
        if isinstance(value, Mapping) and depth < _MAX_DEPTH:
            rows += flatten(value, label, depth + 1)
        elif isinstance(value, Mapping):
            rows.append((label, f"{len(value):,} {'entry' if len(value) == 1 else 'entries'}"))
        else:
            rows.append((label, _scalar(value)))
        if len(rows) >= _MAX_ITEMS:
            return rows[:_MAX_ITEMS]
    return rows


def _numbers(values: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        label = f"{prefix} · {key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(_numbers(value, label))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[label] = float(value)
    return out


# -- telemetry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """One model's telemetry over a window, summed over the API's (version, device class)
    groups: the sums are exact; ``p95_worst_ms`` is the highest group p95 (percentiles do
    not add up, so the page says which group it is)."""

    inferences: int
    errors: int
    error_rate: float | None
    cloud_share: float | None
    accuracy: float | None
    feedback: int
    p95_worst_ms: float | None
    p95_worst_group: str


def _group_name(row: MetricsRow) -> str:
    version = f"v{row.version}" if row.version is not None else "no version"
    return f"{version} on {row.device_class or 'unknown class'}"


def traffic(rows: Sequence[MetricsRow]) -> Traffic | None:
    """Sum the API's metric groups of one model; None when there were no events."""
    if not rows:
        return None
    inferences = sum(r.count for r in rows)
    errors = sum(r.errors for r in rows)
    cloud = sum((r.cloud_share or 0.0) * r.count for r in rows)
    feedback = sum(r.feedback_count for r in rows)
    correct = sum((r.accuracy or 0.0) * r.feedback_count for r in rows)
    with_p95 = [r for r in rows if r.latency_p95_ms is not None]
    worst = max(with_p95, key=lambda r: r.latency_p95_ms or 0.0) if with_p95 else None
    return Traffic(
        inferences=inferences,
        errors=errors,
        error_rate=errors / (inferences + errors) if inferences + errors else None,
        cloud_share=cloud / inferences if inferences else None,
        accuracy=correct / feedback if feedback else None,
        feedback=feedback,
        p95_worst_ms=worst.latency_p95_ms if worst is not None else None,
        p95_worst_group=_group_name(worst) if worst is not None else "",
    )


@dataclass(frozen=True)
class OverviewRow:
    """One model on the overview page."""

    name: str
    production_version: int | None
    latest_version: int | None
    rollouts: tuple[Rollout, ...]
    experiments: tuple[Experiment, ...]
    firing_alerts: int | None
    traffic: Traffic | None
    production_devices: int | None = None  # distinct devices on production in the window


# -- rollouts --------------------------------------------------------------------------


def rollout_share(
    rollouts: Iterable[Rollout], model: str
) -> dict[int, list[tuple[Rollout, float]]]:
    """Per version of ``model``: the active rollouts it is part of and its share of traffic
    (the candidate gets ``percent``, the control the rest)."""
    shares: dict[int, list[tuple[Rollout, float]]] = {}
    for rollout in rollouts:
        if rollout.model != model or rollout.state not in ("running", "paused"):
            continue
        shares.setdefault(rollout.candidate_version, []).append((rollout, rollout.percent))
        if rollout.control_version is not None:
            shares.setdefault(rollout.control_version, []).append(
                (rollout, 100.0 - rollout.percent)
            )
    return shares


_ROLLOUT_ACTIONS = frozenset({"create", "advance", "pause", "resume", "rollback", "complete"})


def step_times(rollout: Rollout, trail: Sequence[AuditEntry]) -> list[datetime | None]:
    """When each step of the schedule was reached (None: not yet, or not in the trail):
    the first at creation, each later one at the ``advance`` that moved to it."""
    reached: list[datetime | None] = [None] * len(rollout.schedule)
    reached[0] = rollout.created_at
    advances = sorted(e.at for e in trail if e.action == "advance")
    for step, moment in enumerate(advances[: len(reached) - 1], start=1):
        reached[step] = moment
    return reached


def audit_link(action: str, subject: str) -> str | None:
    """The console page of an audit entry's subject, when there is one."""
    from urllib.parse import quote

    if action.startswith("experiment."):
        return f"/ui/experiments/{quote(subject, safe='')}"
    if action.startswith("alert."):
        return "/ui/alerts"
    if action in _ROLLOUT_ACTIONS:
        return f"/ui/rollouts/{quote(subject, safe='')}"
    return None


# -- variants, schema, lineage ---------------------------------------------------------


@dataclass(frozen=True)
class VariantCell:
    """The variants of one format x precision (usually one)."""

    variants: tuple[VariantInfo, ...]


@dataclass(frozen=True)
class VariantGrid:
    """Variants as rows of formats and columns of precisions."""

    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    cells: dict[tuple[str, str], VariantCell] = field(default_factory=dict)


def variant_grid(variants: Sequence[VariantInfo]) -> VariantGrid:
    """Lay ``variants`` out as a format x precision grid."""
    formats = tuple(dict.fromkeys(sorted(v.format for v in variants)))
    precisions = tuple(dict.fromkeys(sorted(v.precision for v in variants)))
    cells: dict[tuple[str, str], list[VariantInfo]] = {}
    for variant in variants:
        cells.setdefault((variant.format, variant.precision), []).append(variant)
    return VariantGrid(
        formats, precisions, {key: VariantCell(tuple(vs)) for key, vs in cells.items()}
    )


def _shape(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join("?" if d is None else str(d) for d in value) + "]"
    return _scalar(value)


def schema_tables(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A model schema as tables: inputs, outputs (labels listed), and the other fields."""
    inputs = []
    for item in schema.get("inputs") or []:
        if not isinstance(item, Mapping):
            continue
        extra = {k: v for k, v in item.items() if k not in ("name", "dtype", "shape")}
        inputs.append(
            {
                "name": str(item.get("name", NO_VALUE)),
                "dtype": str(item.get("dtype", NO_VALUE)),
                "shape": _shape(item.get("shape")),
                "other": flatten(extra),
            }
        )
    outputs = []
    for item in schema.get("outputs") or []:
        if not isinstance(item, Mapping):
            continue
        labels = item.get("labels") or []
        extra = {k: v for k, v in item.items() if k not in ("name", "kind", "labels")}
        outputs.append(
            {
                "name": str(item.get("name", NO_VALUE)),
                "kind": str(item.get("kind", NO_VALUE)),
                "labels": [str(label) for label in labels[:100]],
                "label_count": len(labels),
                "other": flatten(extra),
            }
        )
    other = {k: v for k, v in schema.items() if k not in ("inputs", "outputs")}
    return {"inputs": inputs, "outputs": outputs, "other": flatten(other)}


@dataclass(frozen=True)
class Lineage:
    """Where a version came from.

    ``dataset_fingerprint`` is the lineage field (``build.json``: the fingerprint of the
    whole dataset the build loaded); ``training_fingerprint`` is the run record's (what
    training read: the dataset, or ``splits:train,validation,test`` when it trained on
    splits), which is what a build's model card prints. They differ for every build that
    trains on splits, so the page shows both, each named for what it is.
    """

    dataset_fingerprint: str | None
    training_fingerprint: str | None
    split_fingerprints: tuple[tuple[str, str], ...]
    dataset_name: str | None
    parent_version: int | None
    source_framework: str | None
    run_id: str | None
    git_commit: str | None
    trained_at: str | None

    @property
    def fingerprints_differ(self) -> bool:
        """Whether the card's fingerprint is not the lineage's (both known)."""
        return (
            self.dataset_fingerprint is not None
            and self.training_fingerprint is not None
            and self.dataset_fingerprint != self.training_fingerprint
        )


def lineage(version: VersionInfo) -> Lineage:
    """The version's lineage fields with the run record's dataset block beside them."""
    record = version.run_record or {}
    dataset = record.get("dataset") if isinstance(record.get("dataset"), Mapping) else {}
    assert isinstance(dataset, Mapping)
    splits = dataset.get("fingerprints") if isinstance(dataset.get("fingerprints"), Mapping) else {}
    assert isinstance(splits, Mapping)
    git = record.get("git") if isinstance(record.get("git"), Mapping) else {}
    assert isinstance(git, Mapping)
    training = dataset.get("fingerprint")
    return Lineage(
        dataset_fingerprint=version.dataset_fingerprint,
        training_fingerprint=str(training) if training is not None else None,
        split_fingerprints=tuple((str(k), str(v)) for k, v in splits.items() if v is not None),
        dataset_name=str(dataset["name"]) if dataset.get("name") is not None else None,
        parent_version=version.parent_version,
        source_framework=version.source_framework,
        run_id=str(record["run_id"]) if record.get("run_id") else None,
        git_commit=str(git["commit"]) if git.get("commit") else None,
        trained_at=str(record["started_at"]) if record.get("started_at") else None,
    )


# -- comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareRow:
    """One number of two versions and the difference b - a (None when either is missing)."""

    label: str
    a: float | None
    b: float | None

    @property
    def difference(self) -> float | None:
        """b - a."""
        return self.b - self.a if self.a is not None and self.b is not None else None


def compare_metrics(a: VersionInfo, b: VersionInfo) -> list[CompareRow]:
    """The numeric metrics of two versions (the union of their keys), b - a."""
    left, right = _numbers(a.metrics), _numbers(b.metrics)
    labels = list(dict.fromkeys([*left, *right]))
    return [CompareRow(label, left.get(label), right.get(label)) for label in labels]


def compare_sizes(a: VersionInfo, b: VersionInfo) -> list[CompareRow]:
    """Per variant name: the model file sizes of two versions."""
    left = {v.name: float(v.size) for v in a.variants}
    right = {v.name: float(v.size) for v in b.variants}
    labels = list(dict.fromkeys([*left, *right]))
    return [CompareRow(label, left.get(label), right.get(label)) for label in labels]
