"""Validation of data against a ModelSchema: every violation, with its row.

Checks: sample shape, numeric dtype, missing values, value range, and labels the schema
does not know. The report lists every violation (row numbers are 1-based data rows, the
way a spreadsheet shows them), counts them per kind, and can raise one clear error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketml.data._dataset import Dataset
from pocketml.data.loaders import RawTable, _numeric_column
from pocketml.errors import DataValidationError, InvalidInput
from pocketml.schema import ModelSchema

__all__ = ["ValidationReport", "Violation", "validate_dataset", "validate_table"]

KINDS = ("shape", "dtype", "missing", "range", "label")


@dataclass(frozen=True)
class Violation:
    """One problem: its kind, the data row (1-based, None for whole-dataset problems)."""

    kind: str
    message: str
    row: int | None = None
    column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"kind": self.kind, "row": self.row, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating ``num_rows`` rows against a schema."""

    source: str
    num_rows: int
    violations: tuple[Violation, ...] = field(default_factory=tuple)

    @property
    def is_valid(self) -> bool:
        """True when there is no violation."""
        return not self.violations

    def counts(self) -> dict[str, int]:
        """Violations per kind (every kind listed, zeros included)."""
        counter = Counter(v.kind for v in self.violations)
        return {kind: counter.get(kind, 0) for kind in KINDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "source": self.source,
            "num_rows": self.num_rows,
            "valid": self.is_valid,
            "counts": self.counts(),
            "violations": [v.to_dict() for v in self.violations],
        }

    def raise_for_violations(self) -> None:
        """Raise DataValidationError summarising the violations, if there are any."""
        if self.is_valid:
            return
        first = "; ".join(
            (f"row {v.row}: " if v.row else "") + v.message for v in self.violations[:3]
        )
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        raise DataValidationError(
            f"{self.source} violates the schema ({counts}): {first}"
            + (" ..." if len(self.violations) > 3 else ""),
            report=self,
        )


def _check_values(
    features: np.ndarray, schema: ModelSchema, columns: list[str] | None
) -> list[Violation]:
    spec = schema.input
    violations: list[Violation] = []
    flat = features.reshape(features.shape[0], -1)
    for row in np.flatnonzero(~np.isfinite(flat).all(axis=1)):
        bad = np.flatnonzero(~np.isfinite(flat[row]))
        column = columns[bad[0]] if columns else None
        violations.append(
            Violation("missing", f"{bad.size} missing or non-finite value(s)", int(row) + 1, column)
        )
    if spec.value_range is not None:
        low, high = spec.value_range
        with np.errstate(invalid="ignore"):
            outside = (flat < low) | (flat > high)
        for row in np.flatnonzero(outside.any(axis=1)):
            bad = np.flatnonzero(outside[row])
            column = columns[bad[0]] if columns else None
            worst = flat[row, bad[np.argmax(np.abs(flat[row, bad]))]]
            violations.append(
                Violation(
                    "range",
                    f"{bad.size} value(s) outside [{low:g}, {high:g}], e.g. {worst:g}",
                    int(row) + 1,
                    column,
                )
            )
    return violations


def _check_labels(names: list[str], schema: ModelSchema) -> list[Violation]:
    known = set(schema.labels)
    return [
        Violation("label", f"label {name!r} is not one of the schema's labels", row + 1)
        for row, name in enumerate(names)
        if name not in known
    ]


def validate_dataset(dataset: Dataset, schema: ModelSchema) -> ValidationReport:
    """Validate a loaded Dataset against ``schema``'s first input and output."""
    expected = schema.input.sample_shape
    if dataset.sample_shape != expected:
        violation = Violation(
            "shape",
            f"samples have shape {dataset.sample_shape}; the schema expects {expected}",
        )
        return ValidationReport(dataset.name, len(dataset), (violation,))
    violations = _check_values(
        dataset.features, schema, list(dataset.feature_names) if dataset.feature_names else None
    )
    names = [dataset.class_names[i] for i in dataset.labels]
    violations += _check_labels(names, schema)
    violations.sort(key=lambda v: (v.row or 0, KINDS.index(v.kind)))
    return ValidationReport(dataset.name, len(dataset), tuple(violations))


def validate_table(raw: RawTable, schema: ModelSchema, target: str) -> ValidationReport:
    """Validate a table as read from disk, cell by cell, before conversion to numbers."""
    if target not in raw.columns:
        raise InvalidInput(
            f"target column {target!r} is not in {raw.name}; columns are {', '.join(raw.columns)}"
        )
    feature_names = [c for c in raw.columns if c != target]
    expected = schema.input.sample_shape
    if schema.input.layout != "NC" or expected != (len(feature_names),):
        violation = Violation(
            "shape",
            f"{raw.name} has {len(feature_names)} feature columns; the schema expects "
            f"samples of shape {expected} ({schema.input.layout})",
        )
        return ValidationReport(raw.name, raw.num_rows, (violation,))
    violations: list[Violation] = []
    matrix = np.empty((raw.num_rows, len(feature_names)), dtype=np.float32)
    for j, column in enumerate(feature_names):
        matrix[:, j], problems = _numeric_column(column, raw.columns[column])
        for row, problem in problems:
            kind = "missing" if problem == "missing value" else "dtype"
            violations.append(Violation(kind, f"{problem} in column {column!r}", row + 1, column))
    # missing cells are already reported per cell above; check ranges on the rest
    violations += [v for v in _check_values(matrix, schema, feature_names) if v.kind == "range"]
    labels = ["" if v is None else str(v) for v in raw.columns[target]]
    violations += _check_labels(labels, schema)
    violations.sort(key=lambda v: (v.row or 0, KINDS.index(v.kind)))
    return ValidationReport(raw.name, raw.num_rows, tuple(violations))
