"""Choose the best variant for each device profile under size, latency and accuracy budgets.

The rule, applied per profile (documented in docs/optimize.md):

1. Candidates are the variants whose format the profile supports.
2. A candidate *fits* when it meets every budget: size, estimated p95 latency
   (host p95 / speed factor; the limit is the budget's, else the profile's target),
   accuracy drop against the fp32 reference or minimum accuracy, and the profile's memory
   limit. A metric that was not measured (Core ML is size-only here) cannot meet a budget
   on it.
3. On a CPU-only profile, fp16 and dynamic-int8 variants that ran slower than the fp32
   variant of their format (or the reference) are set aside; they are chosen only when
   no other variant fits (the size budget forces them), and the explanation says so.
4. Among the fitting variants, the best accuracy wins; accuracies within
   ``accuracy_tolerance`` of the best count as a tie, broken by lower latency, then
   smaller size.
5. When nothing fits, the closest variant (smallest summed relative excess) is reported
   with every budget it fails and by how much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketml.bench import BenchmarkResult, DeviceProfile
from pocketml.errors import InvalidInput

__all__ = [
    "Budget",
    "BudgetCheck",
    "Selection",
    "VariantSelector",
    "plot_variants",
    "print_selections",
    "selections_table",
]


@dataclass(frozen=True)
class Budget:
    """Limits for one profile; None means no limit. MB = 10**6 bytes; accuracy in [0, 1]."""

    max_size_mb: float | None = None
    max_p95_ms: float | None = None
    max_accuracy_drop: float | None = None
    min_accuracy: float | None = None


@dataclass(frozen=True)
class BudgetCheck:
    """One budget applied to one variant: ``excess`` > 0 says by how much it fails."""

    budget: str
    limit: float
    actual: float | None
    unit: str

    @property
    def is_met(self) -> bool:
        """True when the measured value is within the limit."""
        return self.actual is not None and self.excess <= 0

    @property
    def excess(self) -> float:
        """How far past the limit the value is (positive = failing); inf if unmeasured."""
        if self.actual is None:
            return float("inf")
        sign = -1.0 if self.budget == "min_accuracy" else 1.0
        return sign * (self.actual - self.limit)

    def describe(self) -> str:
        """A sentence saying whether and by how much the budget is missed."""
        if self.actual is None:
            return f"{self.budget} {self.limit:g} {self.unit}: not measured on this host"
        verb = "meets" if self.is_met else "fails"
        return (
            f"{self.budget} {self.limit:g} {self.unit}: {verb} with {self.actual:.4g} "
            f"{self.unit}" + ("" if self.is_met else f" (off by {self.excess:.4g} {self.unit})")
        )


@dataclass(frozen=True)
class Selection:
    """The variant chosen for one profile, or the closest one and why it fails."""

    profile: DeviceProfile
    variant: BenchmarkResult | None
    estimated_p95_ms: float | None
    checks: tuple[BudgetCheck, ...]
    explanation: str
    closest: BenchmarkResult | None = None
    failures: tuple[BudgetCheck, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """A ``build.json``-ready dict; latency is labelled as an estimate from the host."""
        chosen = self.variant
        return {
            "profile": self.profile.name,
            "variant": chosen.name if chosen else None,
            "path": chosen.path if chosen else None,
            "format": chosen.model_format if chosen else None,
            "precision": chosen.precision if chosen else None,
            "method": chosen.method if chosen else None,
            "size_bytes": chosen.size_bytes if chosen else None,
            "accuracy": chosen.accuracy if chosen else None,
            "estimated_p95_ms": self.estimated_p95_ms,
            "latency_is_estimated": True,
            "speed_factor": self.profile.speed_factor,
            "threads": self.profile.threads,
            "explanation": self.explanation,
            "closest": self.closest.name if self.closest else None,
            "budget_checks": [
                {"budget": c.budget, "limit": c.limit, "actual": c.actual, "met": c.is_met}
                for c in self.checks
            ],
        }


def _reference(results: Sequence[BenchmarkResult]) -> BenchmarkResult | None:
    return next((r for r in results if r.precision == "fp32" and r.accuracy is not None), None)


def _is_slow_on_cpu(result: BenchmarkResult, results: Sequence[BenchmarkResult]) -> bool:
    """fp16 / dynamic-int8 variant measured slower than the fp32 variant it derives from."""
    if not (result.precision == "fp16" or result.method == "dynamic"):
        return False
    fp32 = [r for r in results if r.precision == "fp32" and r.latency_p95_ms is not None]
    same = [r for r in fp32 if r.model_format == result.model_format] or fp32
    if not same or result.latency_p95_ms is None:
        return False
    return result.latency_p95_ms > same[0].latency_p95_ms  # type: ignore[operator]


@dataclass(frozen=True)
class VariantSelector:
    """Chooses a variant per profile (rule in the module docstring).

    Args:
        budgets: a Budget per profile name; profiles without one get ``default_budget``.
        default_budget: budget of profiles missing from ``budgets``.
        accuracy_tolerance: accuracies within this of the best tie (0.005 = 0.5 point).
    """

    budgets: Mapping[str, Budget] = field(default_factory=dict)
    default_budget: Budget = field(default_factory=Budget)
    accuracy_tolerance: float = 0.005

    def select(
        self, results: Sequence[BenchmarkResult], profiles: Sequence[DeviceProfile]
    ) -> list[Selection]:
        """Choose one variant per profile.

        Args:
            results: benchmark results of every variant of one model version.
            profiles: the device profiles to choose for.

        Returns:
            One Selection per profile, in order.

        Raises:
            InvalidInput: no results, a negative tolerance, or a budget for an unknown
                profile.
        """
        if not results or self.accuracy_tolerance < 0:
            raise InvalidInput(
                "expected at least one benchmark result and accuracy_tolerance >= 0; got "
                f"{len(results)} results and {self.accuracy_tolerance}."
            )
        unknown = sorted(set(self.budgets) - {p.name for p in profiles})
        if unknown:
            raise InvalidInput(
                f"budgets name unknown profile {unknown[0]!r}; profiles are "
                f"{', '.join(p.name for p in profiles)}. Fix the name or add the profile."
            )
        return [self._select_one(results, p) for p in profiles]

    def _checks(
        self, result: BenchmarkResult, profile: DeviceProfile, ref: BenchmarkResult | None
    ) -> tuple[BudgetCheck, ...]:
        budget = self.budgets.get(profile.name, self.default_budget)
        est = _estimate(result, profile)
        checks = [
            BudgetCheck("max_memory_mb", profile.memory_limit_mb, result.peak_memory_mb, "MB")
        ]
        if budget.max_size_mb is not None:
            checks.append(BudgetCheck("max_size_mb", budget.max_size_mb, result.size_mb, "MB"))
        latency_limit = budget.max_p95_ms or profile.latency_budget_ms
        if latency_limit is not None:
            checks.append(BudgetCheck("max_p95_ms", latency_limit, est, "ms"))
        if budget.max_accuracy_drop is not None:
            drop = None
            if ref is not None and ref.accuracy is not None and result.accuracy is not None:
                drop = (ref.accuracy - result.accuracy) * 100
            limit = budget.max_accuracy_drop * 100
            checks.append(BudgetCheck("max_accuracy_drop", limit, drop, "points"))
        if budget.min_accuracy is not None:
            accuracy = None if result.accuracy is None else result.accuracy * 100
            checks.append(BudgetCheck("min_accuracy", budget.min_accuracy * 100, accuracy, "%"))
        return tuple(checks)

    def _select_one(self, results: Sequence[BenchmarkResult], profile: DeviceProfile) -> Selection:
        ref = _reference(results)
        candidates = [r for r in results if r.model_format in profile.formats]
        if not candidates:
            return Selection(
                profile,
                None,
                None,
                (),
                f"no variant in a format {profile.name} runs "
                f"({', '.join(profile.formats)}); build one of those formats.",
            )
        checks = {r.name: self._checks(r, profile, ref) for r in candidates}
        fitting = [r for r in candidates if all(c.is_met for c in checks[r.name])]
        slow = {r.name for r in fitting if profile.is_cpu_only and _is_slow_on_cpu(r, results)}
        preferred = [r for r in fitting if r.name not in slow]
        if preferred or fitting:
            chosen = self._rank(preferred or fitting)
            why = self._why(chosen, profile, fitting, slow, results)
            return Selection(profile, chosen, _estimate(chosen, profile), checks[chosen.name], why)
        closest = min(candidates, key=lambda r: _distance(checks[r.name]))
        failures = tuple(c for c in checks[closest.name] if not c.is_met)
        why = f"no variant fits {profile.name}; closest is {closest.name}: " + "; ".join(
            c.describe() for c in failures
        )
        return Selection(
            profile,
            None,
            _estimate(closest, profile),
            checks[closest.name],
            why,
            closest,
            failures,
        )

    def _rank(self, pool: Sequence[BenchmarkResult]) -> BenchmarkResult:
        best = max((r.accuracy for r in pool if r.accuracy is not None), default=None)
        tied = [
            r
            for r in pool
            if best is None
            or (r.accuracy is not None and r.accuracy >= best - self.accuracy_tolerance)
        ]
        inf = float("inf")
        return min(tied, key=lambda r: (r.latency_p95_ms or inf, r.size_bytes))

    def _why(
        self,
        chosen: BenchmarkResult,
        profile: DeviceProfile,
        fitting: Sequence[BenchmarkResult],
        slow: set[str],
        results: Sequence[BenchmarkResult],
    ) -> str:
        est = _estimate(chosen, profile)
        latency = "latency not measured" if est is None else f"est. p95 {est:.3g} ms"
        text = (
            f"{chosen.name}: best accuracy among {len(fitting)} fitting variant(s) "
            f"(ties within {self.accuracy_tolerance * 100:g} points go to lower latency, then "
            f"smaller size); {latency} on {profile.name} (estimated from the host, speed "
            f"factor {profile.speed_factor:g})"
        )
        if chosen.name in slow:
            ref = [r for r in results if r.precision == "fp32" and r.latency_p95_ms]
            ratio = (chosen.latency_p95_ms or 0) / (ref[0].latency_p95_ms or 1) if ref else 0
            text += (
                f"; chosen although it is {ratio:.2f}× slower than fp32 on this CPU-only "
                "profile, because the size budget excludes every faster variant"
            )
        elif slow:
            text += (
                f"; set aside as slower than fp32 on a CPU-only profile: {', '.join(sorted(slow))}"
            )
        return text


def _estimate(result: BenchmarkResult, profile: DeviceProfile) -> float | None:
    if result.latency_p95_ms is None:
        return None
    return profile.estimate_latency_ms(result.latency_p95_ms)


def _distance(checks: Sequence[BudgetCheck]) -> float:
    total = 0.0
    for check in checks:
        if not check.is_met:
            total += check.excess / abs(check.limit) if check.limit else check.excess
    return total


def selections_table(selections: Sequence[Selection], width: int = 200) -> Any:
    """A Rich table with one row per profile: chosen variant, estimate, explanation.

    Args:
        selections: the output of :meth:`VariantSelector.select`.
        width: the terminal width to fit; profile and variant names always show whole.

    Returns:
        A ``rich.table.Table``.
    """
    from pocketml._tables import Column, fitted_table

    columns = (
        Column("profile", is_name=True),
        Column("variant", is_name=True),
        Column("format", priority=1),
        Column("size MB", "right"),
        Column("acc %", "right"),
        Column("est. p95 ms", "right"),
        Column("why", wraps=True),
    )
    rows = []
    for s in selections:
        v = s.variant
        rows.append(
            (
                s.profile.name,
                v.name if v else "none",
                v.model_format if v else "—",
                f"{v.size_mb:.3f}" if v else "—",
                f"{v.accuracy * 100:.2f}" if v and v.accuracy is not None else "—",
                f"{s.estimated_p95_ms:.3g}" if s.estimated_p95_ms is not None else "—",
                s.explanation,
            )
        )
    title = "Variant per device profile (latency estimated from this host)"
    return fitted_table(title, columns, rows, width)


def print_selections(selections: Sequence[Selection], console: Any = None) -> None:
    """Print :func:`selections_table` to ``console`` (default: a new stdout console).

    Args:
        selections: the output of :meth:`VariantSelector.select`.
        console: a ``rich.console.Console``.
    """
    from rich.console import Console

    console = console or Console()
    console.print(selections_table(selections, width=console.width))


def plot_variants(results: Sequence[BenchmarkResult], path: Path | str) -> Path:
    """Write a PNG: accuracy vs. p95 latency, marker area ~ file size, a colour per format.

    Size-only variants (Core ML) have no latency or accuracy here and are left out; the
    title says how many.

    Args:
        results: benchmark results.
        path: the PNG to write.

    Returns:
        The written path.

    Raises:
        InvalidInput: no result has both latency and accuracy.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [r for r in results if r.latency_p95_ms is not None and r.accuracy is not None]
    if not drawn:
        raise InvalidInput("expected at least one result with latency and accuracy; got none.")
    colours = {"onnx": "tab:blue", "ort": "tab:green", "tflite": "tab:orange", "coreml": "tab:red"}
    largest = max(r.size_bytes for r in drawn)
    figure, axes = plt.subplots(figsize=(7, 5))
    for fmt in sorted({r.model_format for r in drawn}):
        group = [r for r in drawn if r.model_format == fmt]
        xs = [float(r.latency_p95_ms or 0.0) for r in group]
        ys = [float(r.accuracy or 0.0) * 100 for r in group]
        axes.scatter(
            xs,
            ys,
            s=[40 + 600 * r.size_bytes / largest for r in group],
            c=colours.get(fmt, "tab:gray"),
            alpha=0.6,
            label=fmt,
        )
        for r, x, y in zip(group, xs, ys, strict=True):
            axes.annotate(r.name, (x, y), fontsize=7)
    skipped = len(results) - len(drawn)
    axes.set_xlabel("p95 latency on this host, batch 1 (ms)")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(
        "Variants: marker area ~ file size"
        + (f" ({skipped} size-only not shown)" if skipped else "")
    )
    axes.legend(title="format")
    axes.grid(alpha=0.3)
    out = Path(path)
    figure.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return out
