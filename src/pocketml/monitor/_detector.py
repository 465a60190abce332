"""The drift-detector verb and what every detector shares: sizes, coarsening, the result.

A detector tests one block: ``test(reference_counts, current_counts) -> FeatureDrift``.
Both arguments are bin counts, and the reference is treated as a *sample* of its size
(two-sample tests), never as exact frequencies: with a 10,000-row reference and a
5,000-row window the reference's own noise is a third of the total, and a test that
ignores it (Evidently's chi-squared) raises false alarms that grow with the window.

Every detector returns a p-value from the statistic's null distribution for *these* two
sample sizes and, from it, the per-window-size threshold on its score (``threshold``: the
score at which ``p == alpha``). The thresholds therefore shrink as windows grow, unlike
fixed distance cut-offs (PSI 0.1/0.25, Wasserstein/JS 0.1) that flag most 50-row null
windows and miss real shifts at 5,000 rows.

Small windows: bins are coarsened (adjacent bins merged, by the reference's mass only, so
the grouping never looks at the current window) until each group expects at least
``min_expected`` current rows; chi-squared approximations hold from there. Below
``min_current`` rows (or ``min_reference``) a detector answers "not enough data" with
``drifted=False`` instead of a decision.

Noisy counts (local differential privacy): ``test(..., noise_variance=v)`` says the
window's counts carry zero-mean noise of variance ``v`` per bin (summed over the devices
whose sketches were merged; ``reference_noise_variance`` the same for the reference, 0 for
a build-time profile). Such counts can be negative. The tests stay valid by putting the
noise into the null distribution, not by pretending it away:

- the null covariance of the share differences ``d = current/n - reference/n_ref`` becomes
  ``(1/n_ref + 1/n)(diag p - p p^T) + (I - p 1^T) diag(v) (I - 1 p^T) / n^2`` (+ the same
  for the reference): the second term is the noise, seen through the division by the noisy
  total (``share_covariance``);
- chi-squared becomes the Wald statistic ``d^T Sigma^-1 d`` on K'-1 groups (it *is* Pearson's
  statistic when ``v = 0``), still chi-squared with K'-1 degrees of freedom;
- the distance scores (PSI, JS, Wasserstein) are computed on counts clipped at 0 and their
  null is that of the quadratic form they approximate under that covariance
  (``quadratic_null``: a weighted sum of chi-squares), the scaled chi-squared when ``v = 0``;
- coarsening also merges bins until each group's expected count is at least ``NOISE_SD``
  (3; ``LOG_NOISE_SD`` = 5 for PSI and JS, whose logarithms bend more) noise standard
  deviations, so clipping almost never bites and the Gaussian limit holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import stats

from pocketml.errors import InvalidInput

__all__ = [
    "DEFAULT_ALPHA",
    "LOG_NOISE_SD",
    "MIN_CURRENT",
    "MIN_EXPECTED",
    "MIN_REFERENCE",
    "NOISE_SD",
    "BinnedDetector",
    "DriftDetector",
    "FeatureDrift",
    "Groups",
    "QuadraticNull",
    "coarsen_labels",
    "noise_per_bin",
    "quadratic_null",
    "share_covariance",
]

DEFAULT_ALPHA = 0.01
MIN_CURRENT = 50
MIN_REFERENCE = 100
MIN_EXPECTED = 5.0
# With noisy counts a group must expect this many noise standard deviations of rows: at 3
# clipping is rare and the linear statistics (chi-squared, Wasserstein) keep their level;
# PSI and JS take logarithms of shares, whose curvature needs 5 (measured: 3 gave 3-5 %
# false alarms at alpha = 1 %).
NOISE_SD = 3.0
LOG_NOISE_SD = 5.0

Counts = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FeatureDrift:
    """The answer of one detector on one block.

    Attributes:
        method: the detector (``psi``, ``jensen_shannon``, ``wasserstein``, ``chi_squared``).
        score: the statistic (PSI, JS distance, normalised Wasserstein, chi-squared).
        p_value: probability of a score this large without drift (None: not tested).
        threshold: the score at which ``p_value == alpha`` for these sample sizes.
        drifted: ``p_value < alpha`` (always False when not tested).
        n: rows in the current window.
        reason: a sentence for people ("not enough data: 12 rows < 50", ...).
    """

    method: str
    score: float
    p_value: float | None
    threshold: float | None
    drifted: bool
    n: int
    reason: str

    @property
    def is_tested(self) -> bool:
        return self.p_value is not None


class DriftDetector(Protocol):
    """The verb every detector implements."""

    name: str

    def test(
        self,
        reference_counts: npt.ArrayLike,
        current_counts: npt.ArrayLike,
        *,
        noise_variance: npt.ArrayLike = 0.0,
        reference_noise_variance: npt.ArrayLike = 0.0,
    ) -> FeatureDrift:
        """Test whether ``current_counts`` come from the distribution of ``reference_counts``.

        ``noise_variance`` (scalar or one per bin): the variance of the zero-mean noise in
        each bin of ``current_counts`` (local DP), ``reference_noise_variance`` the same for
        the reference.
        """
        ...


def as_counts(
    reference_counts: npt.ArrayLike,
    current_counts: npt.ArrayLike,
    reference_noisy: bool = False,
    current_noisy: bool = False,
) -> tuple[Counts, Counts]:
    """Both count vectors as int64 arrays of one length, or ``InvalidInput``.

    Negative counts are refused unless that side is declared noisy.
    """
    reference = np.asarray(reference_counts, dtype=np.int64).reshape(-1)
    current = np.asarray(current_counts, dtype=np.int64).reshape(-1)
    if reference.shape != current.shape or reference.size < 2:
        raise InvalidInput(
            f"reference and current counts must have one length >= 2; got "
            f"{reference.size} and {current.size}. Use sketches of the same profile."
        )
    for label, counts, noisy in (
        ("reference", reference, reference_noisy),
        ("current", current, current_noisy),
    ):
        if not noisy and (counts < 0).any():
            raise InvalidInput(
                f"{label} bin counts must be >= 0 (or declare their noise variance)."
            )
    return reference, current


def noise_per_bin(variance: npt.ArrayLike, size: int, field: str) -> npt.NDArray[np.float64]:
    """A scalar or per-bin noise variance as ``size`` finite values >= 0, or ``InvalidInput``."""
    try:
        values = np.asarray(variance, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a number or one number per bin.") from None
    if values.ndim == 0:
        values = np.full(size, float(values))
    if values.shape != (size,):
        raise InvalidInput(f"{field} must be a number or {size} numbers (one per bin).")
    if not np.isfinite(values).all() or (values < 0).any():
        raise InvalidInput(f"{field} must be finite and >= 0.")
    return values


def too_small(
    method: str, reference: Counts, current: Counts, min_reference: int, min_current: int
) -> FeatureDrift | None:
    """A "not enough data" answer when a side is below its minimum, else None."""
    n_ref, n_cur = max(int(reference.sum()), 0), max(int(current.sum()), 0)
    if n_cur < min_current:
        reason = f"not enough data: {n_cur} rows in the window < {min_current}"
    elif n_ref < min_reference:
        reason = f"not enough data: {n_ref} reference rows < {min_reference}"
    else:
        return None
    return FeatureDrift(method, float("nan"), None, None, False, n_cur, reason)


def coarsen_labels(
    reference: Counts,
    n_current: int,
    min_expected: float = MIN_EXPECTED,
    current_noise: npt.NDArray[np.float64] | None = None,
    reference_noise: npt.NDArray[np.float64] | None = None,
    noise_sd: float = NOISE_SD,
) -> npt.NDArray[np.int64]:
    """Group label of each bin: adjacent bins merged until each expects >= ``min_expected``
    window rows and, with noisy counts, >= ``noise_sd`` noise standard deviations on each
    side.

    The grouping uses only the reference's proportions, the window size and the declared
    noise, so it is fixed before the window's counts are looked at and keeps the test's level.
    """
    n_ref = max(int(np.clip(reference, 0, None).sum()), 1)
    share = np.clip(reference, 0, None) / n_ref
    n_cur = max(n_current, 1)
    cur_noise = np.zeros(share.size) if current_noise is None else current_noise
    ref_noise = np.zeros(share.size) if reference_noise is None else reference_noise
    groups: list[int] = []
    mass = cur_var = ref_var = 0.0
    group = 0
    for value, cur, ref in zip(share, cur_noise, ref_noise, strict=True):
        groups.append(group)
        mass += float(value)
        cur_var += float(cur)
        ref_var += float(ref)
        if (
            mass * n_cur >= min_expected
            and mass * n_cur >= noise_sd * np.sqrt(cur_var)
            and mass * n_ref >= noise_sd * np.sqrt(ref_var)
        ):
            group += 1
            mass = cur_var = ref_var = 0.0
    labels = np.asarray(groups, dtype=np.int64)
    if group > 0 and (labels == group).any():  # a light last group joins the one before
        labels[labels == group] = group - 1
    return labels


@dataclass(frozen=True)
class Groups:
    """Coarsened counts of both sides and the noise variance each group carries.

    ``reference`` and ``current`` may be negative in a group only when noisy; ``n_ref`` and
    ``n`` are the (noisy) totals, at least 1.
    """

    reference: npt.NDArray[np.float64]
    current: npt.NDArray[np.float64]
    reference_noise: npt.NDArray[np.float64]
    current_noise: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]

    @classmethod
    def of(
        cls,
        reference: Counts,
        current: Counts,
        reference_noise: npt.NDArray[np.float64],
        current_noise: npt.NDArray[np.float64],
        min_expected: float,
        noise_sd: float = NOISE_SD,
    ) -> Groups:
        labels = coarsen_labels(
            reference,
            max(int(current.sum()), 1),
            min_expected,
            current_noise,
            reference_noise,
            noise_sd,
        )
        size = int(labels.max()) + 1

        def total(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
            return np.bincount(labels, weights=values, minlength=size).astype(np.float64)

        return cls(
            total(reference), total(current), total(reference_noise), total(current_noise), labels
        )

    @property
    def noisy(self) -> bool:
        return bool(self.reference_noise.any() or self.current_noise.any())

    @property
    def n_ref(self) -> float:
        return max(float(self.reference.sum()), 1.0)

    @property
    def n(self) -> float:
        return max(float(self.current.sum()), 1.0)

    def clipped(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Both sides with negative (noisy) groups set to 0: what a distance is taken of."""
        return np.clip(self.reference, 0, None), np.clip(self.current, 0, None)

    def difference(self) -> npt.NDArray[np.float64]:
        """Current minus reference shares, unclipped (the noise stays zero-mean)."""
        return self.current / self.n - self.reference / self.n_ref

    def reference_shares(self) -> npt.NDArray[np.float64]:
        reference = np.clip(self.reference, 0, None)
        return reference / max(float(reference.sum()), 1.0)

    def distance_null(self, df: int) -> QuadraticNull:
        """The null of ``sum d_i^2 / p_i``, what PSI and 8 JSD approximate to second order.
        Noise-free it is ``(1/n_ref + 1/n) chi2(df)``."""
        scaled = QuadraticNull.scaled_chi2(df, 1 / self.n_ref + 1 / self.n)
        if not self.noisy:
            return scaled
        shares = self.reference_shares()
        null = quadratic_null(1 / np.maximum(shares, 1e-12), self.covariance(shares))
        return scaled if null is None else null

    def covariance(self, shares: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Null covariance of ``difference()`` with true shares ``shares``."""
        return share_covariance(
            shares, self.n_ref, self.n, self.reference_noise, self.current_noise
        )


def share_covariance(
    shares: npt.NDArray[np.float64],
    n_ref: float,
    n: float,
    reference_noise: npt.NDArray[np.float64],
    current_noise: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Covariance of ``current/n - reference/n_ref`` without drift, noise included.

    Multinomial sampling on both sides gives ``(1/n_ref + 1/n)(diag p - p p^T)``. Noise
    ``e`` added to a side's counts moves its shares by ``(I - p 1^T) e / n`` to first order
    (the total is noisy too), which adds ``(I - p 1^T) diag(v) (I - 1 p^T) / n^2``.
    """
    p = shares
    size = p.size
    cov = (1 / n_ref + 1 / n) * (np.diag(p) - np.outer(p, p))
    through = np.eye(size) - np.outer(p, np.ones(size))
    for variance, total in ((current_noise, n), (reference_noise, n_ref)):
        if variance.any():
            cov = cov + (through * variance) @ through.T / total**2
    return cov


@dataclass(frozen=True)
class QuadraticNull:
    """The null distribution of ``Q = sum_j lambda_j chi2_1`` (a Gaussian quadratic form).

    Liu, Tang & Zhang (2009): a (non-central) chi-squared matched to Q's first four
    cumulants, so the far tail (alpha = 1 %) holds when the eigenvalues are unequal, where
    a two-moment gamma runs 1.5-2x over alpha. With equal eigenvalues ``s`` it is exactly
    ``s chi2(df)``.
    """

    mean: float
    sd: float
    dof: float
    noncentrality: float
    spread: float  # sqrt(2) * a in the paper: the matched chi-squared's standard deviation

    @classmethod
    def scaled_chi2(cls, df: int, scale: float) -> QuadraticNull:
        return cls(df * scale, np.sqrt(2 * df) * scale, float(df), 0.0, np.sqrt(2 * df))

    @classmethod
    def of(cls, eigenvalues: npt.NDArray[np.float64]) -> QuadraticNull | None:
        lam = np.clip(eigenvalues, 0, None)
        c1, c2, c3, c4 = (float((lam**k).sum()) for k in (1, 2, 3, 4))
        if c2 <= 0:
            return None
        s1, s2 = c3 / c2**1.5, c4 / c2**2
        if s1**2 > s2:
            a = 1 / (s1 - np.sqrt(s1**2 - s2))
            noncentrality = s1 * a**3 - a**2
            dof = a**2 - 2 * noncentrality
        else:
            a = 1 / np.sqrt(s2)
            noncentrality, dof = 0.0, 1 / s2
        return cls(c1, np.sqrt(2 * c2), float(dof), float(noncentrality), float(np.sqrt(2) * a))

    def _reference(self) -> stats.rv_continuous:
        if self.noncentrality > 0:
            return stats.ncx2(self.dof, self.noncentrality)
        return stats.chi2(self.dof)

    def sf(self, q: float) -> float:
        """P(Q > q)."""
        x = (q - self.mean) / self.sd * self.spread + self.dof + self.noncentrality
        return float(self._reference().sf(x))

    def isf(self, alpha: float) -> float:
        """The q with P(Q > q) = alpha."""
        x = float(self._reference().isf(alpha))
        return (x - self.dof - self.noncentrality) / self.spread * self.sd + self.mean


def quadratic_null(
    weights: npt.NDArray[np.float64], covariance: npt.NDArray[np.float64]
) -> QuadraticNull | None:
    """The null of ``sum_i w_i d_i^2`` with ``d ~ N(0, covariance)`` (None: degenerate).

    Its eigenvalues are those of ``W^1/2 C W^1/2``. Without noise and with ``w = 1/p``
    they are ``(1/n_ref + 1/n)`` (K-1 times) and 0: the scaled chi-squared of the
    noise-free detectors.
    """
    root = np.sqrt(weights)
    eigenvalues = np.linalg.eigvalsh(root[:, None] * covariance * root[None, :])
    return QuadraticNull.of(eigenvalues.astype(np.float64))


def decide(
    method: str, score: float, p_value: float, threshold: float, alpha: float, n: int
) -> FeatureDrift:
    """The FeatureDrift of a tested block."""
    drifted = p_value < alpha
    verdict = "drift" if drifted else "no drift"
    reason = (
        f"{verdict}: p={p_value:.3g} vs alpha={alpha:g} "
        f"(score {score:.4g}, threshold {threshold:.4g})"
    )
    return FeatureDrift(method, score, p_value, threshold, drifted, n, reason)


class BinnedDetector:
    """The shape every binned two-sample test here shares: the sizes checked, bins that
    would expect fewer than ``min_expected`` window rows (or too few noise standard
    deviations) merged, the degrees of freedom counted, then the subclass's ``_statistic``
    gives (score, p-value, threshold) for the window's size and noise, and ``decide`` turns
    them into a ``FeatureDrift``.

    Args:
        alpha: the per-block false-alarm rate.
        min_current: fewer window rows than this is "not enough data".
        min_reference: fewer reference rows than this is "not enough data".
        min_expected: the fewest window rows a (merged) bin must expect.
    """

    name: str
    # Noisy counts: each group must expect this many noise standard deviations of rows.
    noise_sd: float = NOISE_SD

    def __init__(
        self,
        alpha: float = DEFAULT_ALPHA,
        min_current: int = MIN_CURRENT,
        min_reference: int = MIN_REFERENCE,
        min_expected: float = MIN_EXPECTED,
    ) -> None:
        self.alpha = alpha
        self.min_current = min_current
        self.min_reference = min_reference
        self.min_expected = min_expected

    def test(
        self,
        reference_counts: npt.ArrayLike,
        current_counts: npt.ArrayLike,
        *,
        noise_variance: npt.ArrayLike = 0.0,
        reference_noise_variance: npt.ArrayLike = 0.0,
    ) -> FeatureDrift:
        """Test the window's counts against the reference's (same bins)."""
        reference, current, reference_noise, current_noise = checked(
            reference_counts, current_counts, noise_variance, reference_noise_variance
        )
        small = too_small(self.name, reference, current, self.min_reference, self.min_current)
        if small is not None:
            return small
        groups = Groups.of(
            reference, current, reference_noise, current_noise, self.min_expected, self.noise_sd
        )
        n = round(groups.n)
        df = self._degrees_of_freedom(groups)
        if df < 1:
            return FeatureDrift(self.name, 0.0, None, None, False, n, "not enough data: one group")
        score, p_value, threshold = self._statistic(groups, df)
        return decide(self.name, score, p_value, threshold, self.alpha, n)

    def _degrees_of_freedom(self, groups: Groups) -> int:
        return int(groups.reference.size) - 1

    def _statistic(self, groups: Groups, df: int) -> tuple[float, float, float]:
        """(score, p-value, threshold) of the coarsened counts."""
        raise NotImplementedError


def checked(
    reference_counts: npt.ArrayLike,
    current_counts: npt.ArrayLike,
    noise_variance: npt.ArrayLike,
    reference_noise_variance: npt.ArrayLike,
) -> tuple[Counts, Counts, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both count vectors and both per-bin noise variances, checked (``InvalidInput``)."""
    size = np.asarray(reference_counts).size
    current_noise = noise_per_bin(noise_variance, size, "noise_variance")
    reference_noise = noise_per_bin(reference_noise_variance, size, "reference_noise_variance")
    reference, current = as_counts(
        reference_counts, current_counts, bool(reference_noise.any()), bool(current_noise.any())
    )
    return reference, current, reference_noise, current_noise
