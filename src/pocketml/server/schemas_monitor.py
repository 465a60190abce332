"""Pydantic models of the monitor's admin API: the drift and the accuracy report.

They mirror ``pocketml.monitor``'s report dataclasses field by field (read with
``from_attributes``), so the route only validates what the service returned. Imports
pydantic only: the CLI's ``AdminClient`` parses answers with the same models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AccuracyIntervalPublic",
    "AccuracyPointPublic",
    "AccuracyReportPublic",
    "DriftReportPublic",
    "FeatureDriftPublic",
    "GroupAccuracyPublic",
    "GroupDriftPublic",
    "HistogramPublic",
    "SeriesPointPublic",
]

State = Literal["drift", "no_drift", "not_enough_data"]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class HistogramPublic(_Out):
    """Reference and current counts of one block, with what a plot needs."""

    labels: list[str] = Field(description="One label per bin, e.g. `[0.1, 0.4)` or `other`.")
    edges: list[float] = Field(
        description="Numeric blocks: the bin edges (len(labels) - 1; the first and last bins "
        "are under- and overflow). Empty for categories, classes and confidence."
    )
    reference: list[int] = Field(description="The baseline's counts per bin.")
    current: list[int] = Field(description="The window's counts per bin.")


class FeatureDriftPublic(_Out):
    """One block's test."""

    name: str = Field(examples=["brightness_0"])
    kind: Literal["numeric", "categorical", "projection", "prediction", "confidence"]
    method: str = Field(examples=["wasserstein"])
    state: State
    score: float | None = Field(description="The statistic (null when not tested).")
    p_value: float | None
    threshold: float | None = Field(description="The score at which p == alpha.")
    reason: str
    histogram: HistogramPublic


class GroupDriftPublic(_Out):
    """The drift of one group (the fleet, a device class, ...) over the window."""

    labels: dict[str, str] = Field(examples=[{"device_class": "android-mid"}])
    state: State
    n: int = Field(description="Rows in the window.")
    baseline_n: int = Field(description="Rows in the baseline.")
    events: int = Field(description="Device sketches merged into the window.")
    noise_variance: float = Field(description="Summed per-bin variance of the DP noise.")
    drifted_share: float | None = Field(
        description="Drifted / tested input features after Benjamini-Hochberg (null when "
        "none was tested)."
    )
    features: list[FeatureDriftPublic] = Field(description="Most drifted first.")
    multivariate: list[FeatureDriftPublic] = Field(description="The PCA projections.")
    prediction: FeatureDriftPublic | None
    confidence: FeatureDriftPublic | None


class SeriesPointPublic(_Out):
    """One bucket of the drift series, against the reference profile."""

    start: int
    end: int
    state: State
    n: int
    drifted_share: float | None
    top_feature: str | None
    top_score: float | None
    top_method: str | None


class DriftReportPublic(_Out):
    """``GET /v1/admin/models/{name}/drift``."""

    model: str
    version: int
    since: int = Field(description="The window's start, unix seconds (inclusive).")
    until: int = Field(description="The window's end, unix seconds (exclusive).")
    baseline: Literal["reference", "previous"]
    group_by: list[str]
    filters: dict[str, str]
    alpha: float
    bucket_s: int = Field(description="Seconds per point of the series.")
    fleet: GroupDriftPublic
    groups: list[GroupDriftPublic] = Field(description="Largest first.")
    series: list[SeriesPointPublic] = Field(description="Oldest first.")


class AccuracyIntervalPublic(_Out):
    """An accuracy with its interval at ``level`` over ``n`` rows or labels."""

    value: float
    low: float
    high: float
    n: int
    level: float


class GroupAccuracyPublic(_Out):
    """Estimated and realised accuracy of one group."""

    labels: dict[str, str]
    state: Literal["consistent", "concept_drift", "not_enough_data"]
    n: int = Field(description="Scored rows in the window's sketches.")
    labelled: int = Field(description="Predictions with a feedback label.")
    estimated: AccuracyIntervalPublic | None
    realised: AccuracyIntervalPublic | None
    gap: float | None = Field(description="Realised - estimated.")
    estimated_reason: str
    realised_reason: str


class AccuracyPointPublic(_Out):
    """The fleet's accuracy in one bucket."""

    start: int
    end: int
    n: int
    labelled: int
    estimated: AccuracyIntervalPublic | None
    realised: AccuracyIntervalPublic | None


class AccuracyReportPublic(_Out):
    """``GET /v1/admin/models/{name}/accuracy``."""

    model: str
    version: int
    since: int
    until: int
    group_by: list[str]
    filters: dict[str, str]
    level: float
    bucket_s: int
    reference_accuracy: float | None = Field(
        description="Accuracy on the version's reference split (what drops are measured from)."
    )
    fleet: GroupAccuracyPublic
    groups: list[GroupAccuracyPublic]
    series: list[AccuracyPointPublic]
