"""Numerical parity: does a converted file compute what the source model computes?

Compared on held-out samples: the largest absolute difference of any class probability,
and top-1 agreement (the share of samples where both pick the same class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pocketml.errors import ParityError

__all__ = ["DEFAULT_ATOL", "DEFAULT_MIN_AGREEMENT", "ParityReport", "check_parity"]

DEFAULT_ATOL = 1e-4
DEFAULT_MIN_AGREEMENT = 0.99


@dataclass(frozen=True)
class ParityReport:
    """Outcome of comparing a converted model's outputs to the source model's."""

    target: str
    samples: int
    max_abs_diff: float
    top1_agreement: float
    atol: float
    min_agreement: float

    @property
    def passed(self) -> bool:
        """True when both the difference and the agreement are within tolerance."""
        return self.max_abs_diff <= self.atol and self.top1_agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``passed``."""
        return asdict(self) | {"passed": self.passed}

    def summary(self) -> str:
        """One line for tables: 'ok 3.1e-07 / 100%'."""
        verdict = "ok" if self.passed else "FAIL"
        return f"{verdict} {self.max_abs_diff:.1e} / {self.top1_agreement:.0%}"


def check_parity(
    target: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    atol: float = DEFAULT_ATOL,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare probability arrays (N, classes) of the source and the converted model.

    Raises:
        ParityError: outputs differ beyond ``atol`` or agree on fewer than
            ``min_agreement`` of the samples (unless ``raise_on_failure`` is False).
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(reference.shape)
    report = ParityReport(
        target=target,
        samples=int(reference.shape[0]),
        max_abs_diff=float(np.max(np.abs(reference - candidate))) if reference.size else 0.0,
        top1_agreement=float(np.mean(reference.argmax(1) == candidate.argmax(1)))
        if reference.size
        else 1.0,
        atol=atol,
        min_agreement=min_agreement,
    )
    if raise_on_failure and not report.passed:
        raise ParityError(
            f"{target} output differs from the source model: max |Δp| = "
            f"{report.max_abs_diff:.3g} (tolerance {atol:g}), top-1 agreement "
            f"{report.top1_agreement:.2%} (required {min_agreement:.0%}) on {report.samples} "
            f"samples. {_advice(report)}"
        )
    return report


# Beyond this, a difference is not rounding: the file computes another function.
_NUMERIC_NOISE = 1e-2


def _advice(report: ParityReport) -> str:
    """What to do: a looser tolerance only when the gap looks like rounding."""
    if report.max_abs_diff > _NUMERIC_NOISE or report.top1_agreement < report.min_agreement:
        return (
            "This is not rounding: the file computes something else. Check that it was "
            "converted from this model and that the samples are prepared as the model "
            "takes them (normalization, layout, input shape); a looser --atol would hide "
            "the error, not fix it."
        )
    return (
        "The gap is small enough to be floating-point rounding: if that is expected for "
        f"this format, pass --atol {report.max_abs_diff * 2:.0e}; otherwise check for "
        "unsupported layers."
    )
