"""The build directory: converted files plus ``build.json``, what ``pocketml push`` uploads.

Layout::

    build.json      model name, lineage, and one entry per variant (file, format,
                    precision, role, sha256, size, compatibility, metrics, profiles)
    schema.json     the ModelSchema
    card.md         the model card (Markdown)
    run.json        the run record of the model the device variants come from
    profile.json    the version's reference profile (``pocketml.sketch``), when computed
    <group>/model.onnx, <group>/model.tflite, ...

One build directory is one model version; it may hold device variants (``role: device``)
and the larger cloud model (``role: cloud``) that hybrid inference escalates to.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.convert.pipeline import ConversionResult
from pocketml.errors import InvalidInput
from pocketml.schema import ModelSchema

if TYPE_CHECKING:  # monitor sits above the build stages; write_build only calls to_dict()
    from pocketml.sketch import ReferenceProfile

__all__ = [
    "BUILD_FORMAT_VERSION",
    "PROFILE_FILE",
    "BuildVariant",
    "VariantGroup",
    "render_model_card",
    "write_build",
]

BUILD_FORMAT_VERSION = 1
PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class VariantGroup:
    """The converted files of one trained model inside a build."""

    name: str
    role: str
    framework: str
    results: Sequence[ConversionResult]
    metrics: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in ("device", "cloud"):
            raise InvalidInput(f"variant role must be 'device' or 'cloud'; got {self.role!r}")


@dataclass(frozen=True)
class BuildVariant:
    """One file of a build as ``build.json`` lists it (converted or optimized)."""

    name: str
    path: Path
    format: str
    precision: str
    role: str
    sha256: str
    size: int
    method: str = "none"
    check: str = ""
    compatibility: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    benchmarks: dict[str, Any] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @classmethod
    def from_conversion(cls, group: VariantGroup, result: ConversionResult) -> BuildVariant:
        """The build entry of a plain conversion of ``group``'s model."""
        name = f"{group.name}-{result.target}-{result.precision}"
        return cls(
            name=name,
            path=Path(result.path),
            format=result.target,
            precision=result.precision,
            role=group.role,
            sha256=result.sha256,
            size=result.size,
            check=result.check.summary(),
            compatibility=result.compatibility,
            metrics={"accuracy": result.accuracy, "check": result.check.to_dict()},
            profiles=group.profiles.get(name, []),
        )


def render_model_card(
    schema: ModelSchema,
    groups: Sequence[VariantGroup],
    run_record: dict[str, Any] | None,
    *,
    variants: Sequence[BuildVariant] | None = None,
    intended_use: str = "",
    dataset_fingerprint: str | None = None,
) -> str:
    """A Markdown model card: intended use, data, metrics, variants, limitations.

    ``dataset_fingerprint`` is the whole dataset's (the version's lineage); the run
    record's is what training read (its splits). The card names both, so it never shows
    one value under the name of the other.
    """
    lines = [f"# {schema.name}", ""]
    lines += [intended_use or f"Classifies inputs into {len(schema.labels)} classes.", ""]
    if run_record:
        dataset = run_record.get("dataset", {})
        commit = (run_record.get("git") or {}).get("commit", "n/a")
        lines += [
            "## Training data",
            "",
            f"- dataset: `{dataset.get('name')}`"
            + (f", fingerprint `{dataset_fingerprint}` (lineage)" if dataset_fingerprint else ""),
            f"- training read: fingerprint `{dataset.get('fingerprint')}` (the run's splits)",
            f"- split sizes: {dataset.get('sizes')} (seed {dataset.get('split_seed')})",
            f"- trained: {run_record.get('started_at')}, git commit {commit}",
            "",
        ]
    lines += [
        "## Evaluation (held-out test split)",
        "",
        "| model | role | accuracy | macro-F1 |",
        "|---|---|---|---|",
    ]
    for group in groups:
        acc, f1 = group.metrics.get("accuracy"), group.metrics.get("macro_f1")
        acc_s = f"{acc:.4f}" if isinstance(acc, float) else "n/a"
        f1_s = f"{f1:.4f}" if isinstance(f1, float) else "n/a"
        lines.append(f"| {group.name} | {group.role} | {acc_s} | {f1_s} |")
    entries = variants if variants is not None else _entries(groups)
    lines += ["", "## Variants", "", "| variant | format | precision | role | size | check |"]
    lines.append("|---|---|---|---|---|---|")
    for entry in entries:
        flags = f" ({'; '.join(entry.flags)})" if entry.flags else ""
        lines.append(
            f"| {entry.name} | {entry.format} | {entry.precision} | {entry.role} | "
            f"{entry.size:,} B{flags} | {entry.check or entry.method} |"
        )
    lines += [
        "",
        "## Input",
        "",
        f"`{schema.input.name}`: shape {schema.input.shape}, layout {schema.input.layout}, "
        f"raw range {schema.input.value_range}; normalization "
        f"{schema.input.normalization.to_dict() if schema.input.normalization else 'none'}.",
        "",
        "## Limitations",
        "",
        "Accuracy was measured on held-out data from the training distribution. Phones see "
        "darker, blurrier and noisier inputs; monitor accuracy from feedback after release. "
        "Core ML variants were checked for their interface only (they cannot run on Linux).",
        "",
    ]
    return "\n".join(lines)


def _entries(groups: Sequence[VariantGroup]) -> list[BuildVariant]:
    return [BuildVariant.from_conversion(g, r) for g in groups for r in g.results]


def write_build(
    out_dir: Path | str,
    *,
    schema: ModelSchema,
    groups: Sequence[VariantGroup],
    extra_variants: Sequence[BuildVariant] = (),
    run_record: dict[str, Any] | None = None,
    dataset_fingerprint: str | None = None,
    card: str | None = None,
    params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    profile: ReferenceProfile | None = None,
) -> Path:
    """Write ``build.json``, ``schema.json``, ``card.md``, ``run.json`` (and ``profile.json``).

    Args:
        groups: the plain conversions of each trained model.
        extra_variants: further files (quantized, pruned, ...) to list after them.
        extra: more top-level keys for build.json (e.g. per-profile selections).
        profile: the version's reference profile (``pocketml.sketch.build_input_profile``
            on the training split); written as ``profile.json`` and listed under
            build.json's ``reference_profile`` key, which is null without one.

    Every variant's file must already sit under ``out_dir``. Returns the path of build.json.

    Raises:
        InvalidInput: a file outside ``out_dir``, duplicate names or no variants.
    """
    out_dir = Path(out_dir).resolve()
    entries = [*_entries(groups), *extra_variants]
    if not entries:
        raise InvalidInput("a build needs at least one variant")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise InvalidInput(f"variant names must be unique in a build; got {names}")
    variants = []
    for entry in entries:
        path = entry.path.resolve()
        if not path.is_relative_to(out_dir):
            raise InvalidInput(f"variant file {path} is not inside the build directory {out_dir}")
        variants.append(
            {
                "name": entry.name,
                "file": str(path.relative_to(out_dir)),
                "format": entry.format,
                "precision": entry.precision,
                "role": entry.role,
                "method": entry.method,
                "sha256": entry.sha256,
                "size": entry.size,
                "compatibility": entry.compatibility,
                "metrics": entry.metrics,
                "benchmarks": entry.benchmarks,
                "profiles": entry.profiles,
                "flags": entry.flags,
            }
        )
    (out_dir / "schema.json").write_text(schema.to_json())
    card_text = card or render_model_card(
        schema, groups, run_record, variants=entries, dataset_fingerprint=dataset_fingerprint
    )
    (out_dir / "card.md").write_text(card_text)
    if run_record is not None:
        (out_dir / "run.json").write_text(json.dumps(run_record, indent=2, default=str) + "\n")
    profile_path = out_dir / PROFILE_FILE
    if profile is not None:
        profile_path.write_text(json.dumps(profile.to_dict(), sort_keys=True) + "\n")
    else:  # a rebuild into the same directory must not leave a stale profile behind
        profile_path.unlink(missing_ok=True)
    framework = next((g.framework for g in groups if g.role == "device"), None)
    manifest = {
        "format_version": BUILD_FORMAT_VERSION,
        "model": schema.name,
        "schema": "schema.json",
        "card": "card.md",
        "run_record": "run.json" if run_record is not None else None,
        "reference_profile": PROFILE_FILE if profile is not None else None,
        "dataset_fingerprint": dataset_fingerprint,
        "source_framework": framework,
        "params": params or (run_record or {}).get("params", {}),
        "metrics": {
            g.name: {k: g.metrics.get(k) for k in ("accuracy", "macro_f1")} for g in groups
        },
        "variants": variants,
        **(extra or {}),
    }
    path = out_dir / "build.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return path
