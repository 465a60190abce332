"""The dataset-level decision: every monitored block tested, one correction, one answer.

``detect_drift(profile, current)`` tests each feature and each PCA projection against the
reference (or a previous window) with the detector of its kind, then applies the
Benjamini-Hochberg procedure at ``alpha`` over that family. Why BH and not Holm: with
no drift anywhere (the case false alarms are about) BH's false-discovery control *is*
family-wise control, so a window raises an alarm with probability <= alpha, the same
guarantee as Holm; when drift is real it usually touches several features at once
(a new camera moves brightness, contrast and blur together), and there BH keeps the
power that Holm's step-down spends on protecting against any single false feature.

The dataset is "drifted" when at least one block is rejected; ``drifted_share`` is the
share of tested features that are (Evidently's dataset measure, here after correction).
The projections are the multivariate check: a correlation change that keeps every
marginal moves them, and per-feature tests cannot see it.
Prediction and confidence drift are reported beside it, each at ``alpha`` on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from pocketml.errors import InvalidInput
from pocketml.monitor._chi_squared import ChiSquaredDetector
from pocketml.monitor._detector import DEFAULT_ALPHA, DriftDetector, FeatureDrift
from pocketml.monitor._jensen_shannon import JensenShannonDetector
from pocketml.monitor._psi import PSIDetector
from pocketml.monitor._wasserstein import WassersteinDetector
from pocketml.sketch import CONFIDENCE_BLOCK, PREDICTION_BLOCK, ReferenceProfile, Sketch

__all__ = ["DatasetDrift", "benjamini_hochberg", "detect_drift", "detector_for"]

Method = Literal["wasserstein", "chi_squared", "psi", "jensen_shannon"]
CORRECTION = "benjamini-hochberg"


@dataclass(frozen=True)
class DatasetDrift:
    """Per-block results and the window's decision.

    Attributes:
        features: feature name -> result, ``drifted`` after the correction.
        multivariate: projection block (``@pc1`` ...) -> result, same family.
        prediction, confidence: drift of the predicted class and confidence (or None).
        drifted: at least one feature or projection rejected.
        drifted_share: rejected features / tested features (0 when none tested).
        n: rows in the window.
        alpha, correction: the level and the multiple-testing procedure.
    """

    features: Mapping[str, FeatureDrift]
    multivariate: Mapping[str, FeatureDrift]
    prediction: FeatureDrift | None
    confidence: FeatureDrift | None
    drifted: bool
    drifted_share: float
    n: int
    alpha: float
    correction: str = CORRECTION


def benjamini_hochberg(p_values: list[float], alpha: float) -> list[bool]:
    """Which hypotheses BH rejects at false-discovery rate ``alpha``."""
    if not p_values:
        return []
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    m = p.size
    below = p[order] <= alpha * np.arange(1, m + 1) / m
    rejected = np.zeros(m, dtype=bool)
    if below.any():
        last = int(np.nonzero(below)[0].max())
        rejected[order[: last + 1]] = True
    return [bool(x) for x in rejected]


def detector_for(
    profile: ReferenceProfile,
    block: str,
    numeric: Method = "wasserstein",
    alpha: float = DEFAULT_ALPHA,
) -> DriftDetector:
    """The detector of one block: ``numeric`` for ordered blocks, chi-squared otherwise."""
    bins = profile.bins_of(block)
    ordered = block == CONFIDENCE_BLOCK or (bins is not None and bins.kind == "numeric")
    if not ordered:
        return ChiSquaredDetector(alpha=alpha)
    if numeric == "wasserstein":
        if bins is not None:
            points = bins.points()
        else:  # the confidence histogram: 20 bins on [0, 1]
            size = len(profile.reference.block(block))
            points = (np.arange(size) + 0.5) / size
        return WassersteinDetector(points, profile.scales.get(block, 1.0), alpha=alpha)
    detectors: dict[str, type[ChiSquaredDetector | PSIDetector | JensenShannonDetector]] = {
        "chi_squared": ChiSquaredDetector,
        "psi": PSIDetector,
        "jensen_shannon": JensenShannonDetector,
    }
    if numeric not in detectors:
        raise InvalidInput(
            f"numeric must be one of wasserstein, {', '.join(detectors)}; got {numeric!r}."
        )
    return detectors[numeric](alpha=alpha)


def detect_drift(
    profile: ReferenceProfile,
    current: Sketch,
    *,
    reference: Sketch | None = None,
    numeric: Method = "wasserstein",
    alpha: float = DEFAULT_ALPHA,
    noise_variance: float = 0.0,
    reference_noise_variance: float = 0.0,
) -> DatasetDrift:
    """Test a window's sketch against the profile's reference (or ``reference``).

    ``noise_variance``: the variance of the zero-mean noise in every bin of ``current``
    (local DP: the per-device variance summed over the merged sketches);
    ``reference_noise_variance`` the same for ``reference`` (0 for the profile's own).

    Raises:
        InvalidInput: a sketch of another layout than the profile's, or a noise variance
            that is not a finite number >= 0.
    """
    baseline = profile.reference if reference is None else reference
    for label, sketch in (("current", current), ("reference", baseline)):
        if sketch.layout != profile.layout:
            raise InvalidInput(f"the {label} sketch was not built against this profile.")
    noise = {
        "noise_variance": _variance(noise_variance, "noise_variance"),
        "reference_noise_variance": _variance(reference_noise_variance, "reference_noise_variance"),
    }
    family = [*profile.feature_names, *profile.projection_names]
    results = {
        name: detector_for(profile, name, numeric, alpha).test(
            baseline.block(name), current.block(name), **noise
        )
        for name in family
    }
    tested = [name for name in family if results[name].is_tested]
    rejected = benjamini_hochberg([results[n].p_value or 1.0 for n in tested], alpha)
    for name, is_rejected in zip(tested, rejected, strict=True):
        if results[name].drifted != is_rejected:
            verdict = "drift" if is_rejected else "no drift"
            results[name] = replace(
                results[name],
                drifted=is_rejected,
                reason=f"{verdict} after {CORRECTION} over {len(tested)} blocks; "
                + results[name].reason,
            )
    features = {name: results[name] for name in profile.feature_names}
    tested_features = [r for r in features.values() if r.is_tested]
    extra = {
        block: detector_for(profile, block, numeric, alpha).test(
            baseline.block(block), current.block(block), **noise
        )
        for block in (PREDICTION_BLOCK, CONFIDENCE_BLOCK)
        if block in profile.layout.names
    }
    return DatasetDrift(
        features=features,
        multivariate={name: results[name] for name in profile.projection_names},
        prediction=extra.get(PREDICTION_BLOCK),
        confidence=extra.get(CONFIDENCE_BLOCK),
        drifted=any(results[name].drifted for name in tested),
        drifted_share=(
            sum(r.drifted for r in tested_features) / len(tested_features)
            if tested_features
            else 0.0
        ),
        n=current.n,
        alpha=alpha,
    )


def _variance(value: float, field: str) -> float:
    """One noise variance for every bin: a finite number >= 0, or ``InvalidInput``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{field} must be a number >= 0.") from None
    if not np.isfinite(number) or number < 0:
        raise InvalidInput(f"{field} must be a finite number >= 0; got {value!r}.")
    return number
