"""Pydantic models of the rollout, experiment, targeting and audit admin API.

Validation that needs no database happens here (so it answers 422): percents in (0, 100],
a schedule that increases and reaches 100, dwell and sample sizes, the breach action.
Imports pydantic only, so the CLI's ``AdminClient`` parses responses with the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pocketml.bounds import Bounded, FiniteFloat, JsonObject, Text, VersionNumber

__all__ = [
    "ArmResultPublic",
    "AuditEntryPublic",
    "AuditPage",
    "ExperimentArm",
    "ExperimentCreate",
    "ExperimentList",
    "ExperimentPublic",
    "ExperimentStop",
    "GuardrailPublic",
    "RolloutAction",
    "RolloutCreate",
    "RolloutList",
    "RolloutPublic",
    "TargetingPublic",
    "TargetingUpdate",
]


class _Input(Bounded):
    model_config = ConfigDict(extra="forbid")


_ModelName = Annotated[Text, Field(min_length=1, max_length=64, examples=["digits"])]
_Reason = Annotated[Text, Field(max_length=2000)]


class RolloutCreate(_Input):
    """Start a staged rollout of a candidate version into a model's channel."""

    model: _ModelName
    version: VersionNumber = Field(description="The candidate version.")
    channel: Literal["production"] = "production"
    schedule: list[FiniteFloat] = Field(
        default=[1, 5, 25, 100],
        min_length=1,
        max_length=20,
        description="Percent of devices per step, increasing, ending at 100.",
    )
    min_dwell_s: float = Field(3600.0, ge=0, le=90 * 86400, description="Seconds per step.")
    min_samples: int = Field(200, ge=1, le=10_000_000, description="Per arm, per step.")
    on_breach: Literal["pause", "rollback"] = "rollback"
    guardrails: JsonObject = Field(
        default_factory=dict,
        description='{"thresholds": {metric: value}, "alpha": 0.01}; missing: defaults.',
    )
    targeting: list[JsonObject] = Field(
        default_factory=list, max_length=100, description="Rules the candidate group must match."
    )

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, schedule: list[float]) -> list[float]:
        from pocketml.delivery import validate_schedule

        return list(validate_schedule(schedule))


class RolloutAction(_Input):
    """Why an admin moves a rollout (kept in the audit log)."""

    reason: _Reason = ""


class GuardrailPublic(BaseModel):
    """One guardrail's latest verdict."""

    metric: str
    status: str
    candidate: float | None
    control: float | None
    n_candidate: int
    n_control: int
    threshold: float
    test: str
    p_value: float | None


class RolloutPublic(BaseModel):
    """A rollout with its latest guardrail numbers."""

    id: str
    model: str
    channel: str
    candidate_version: int
    control_version: int | None
    state: str
    schedule: list[float]
    step: int
    percent: float
    min_dwell_s: float
    min_samples: int
    on_breach: str
    guardrails: dict[str, Any]
    targeting: list[dict[str, Any]]
    step_started_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime
    evaluated_at: str | None = None
    metrics: list[GuardrailPublic] = Field(default_factory=list)


class RolloutList(BaseModel):
    """Rollouts of the app, newest first."""

    items: list[RolloutPublic]


class TargetingUpdate(_Input):
    """The targeting rules of a model's channel (``[]``: every device)."""

    rules: list[JsonObject] = Field(max_length=100)


class TargetingPublic(BaseModel):
    """A model channel's targeting rules."""

    model: str
    channel: str
    rules: list[dict[str, Any]]


class AuditEntryPublic(BaseModel):
    """One audited transition."""

    id: int
    subject: str
    action: str
    from_state: str | None
    to_state: str | None
    actor: str
    reason: str
    details: dict[str, Any]
    at: datetime


class AuditPage(BaseModel):
    """The newest audit entries."""

    items: list[AuditEntryPublic]


class ExperimentArm(_Input):
    """One arm: a name, the version it serves, its traffic weight."""

    name: Annotated[Text, Field(min_length=1, max_length=32, examples=["control"])]
    version: VersionNumber
    weight: FiniteFloat = Field(1.0, gt=0, le=1_000_000)


class ExperimentCreate(_Input):
    """Start an A/B experiment on a model's channel; the first arm is the control."""

    model: _ModelName
    channel: Literal["production"] = "production"
    arms: list[ExperimentArm] = Field(min_length=2, max_length=10)
    metric: Literal["accuracy", "mean_confidence", "error_rate", "cloud_share", "latency_ms"] = (
        "accuracy"
    )


class ExperimentStop(_Input):
    """Stop an experiment; ``promote`` is ``"winner"``, an arm's version, or null."""

    promote: VersionNumber | Literal["winner"] | None = None
    reason: _Reason = ""


class ArmResultPublic(BaseModel):
    """One arm on the primary metric; difference and 95 % CI are vs the control arm."""

    name: str
    version: int
    weight: float
    n: int
    value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None


class ExperimentPublic(BaseModel):
    """An experiment with its results."""

    id: str
    model: str
    channel: str
    state: str
    metric: str
    winner: int | None
    suggested_winner: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    arms: list[ArmResultPublic]


class ExperimentList(BaseModel):
    """Experiments of the app, newest first."""

    items: list[ExperimentPublic]
