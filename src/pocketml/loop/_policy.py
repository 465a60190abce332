"""The per-model loop policy: triggers, trust, gate and rollout settings, defaults once.

One pydantic model (``LoopPolicy``) is the home of every default of the loop: the jobs, the
trust filter and the gate read their settings from it, the admin route validates a ``PUT``
against it, and ``GET`` answers it with the defaults filled in. Unknown keys are refused
(a typo must not silently keep a default), and a bad value is an ``InvalidInput`` naming
the field, which the server answers with 422.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pocketml.errors import InvalidInput, ValidationFailed

__all__ = [
    "TRIGGER_KINDS",
    "GatePolicy",
    "LoopPolicy",
    "RolloutPolicy",
    "TriggerPolicy",
    "TrustPolicy",
    "parse_policy",
]

TRIGGER_KINDS = ("alert", "schedule", "labels", "manual")
"""What can create a job: a firing alert, the schedule, N new labels, or a person/CI."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


class TriggerPolicy(BaseModel):
    """When the server creates a job by itself (each trigger off at 0 / empty)."""

    model_config = _STRICT

    alert_metrics: tuple[str, ...] = Field(
        ("accuracy_realised", "accuracy_realised_drop", "drift_share", "accuracy_estimated_drop"),
        max_length=20,
        description="A firing alert of the model on one of these metrics starts a job.",
    )
    schedule_s: float = Field(
        0.0, ge=0, le=366 * 86400, description="Start a job this long after the last (0: off)."
    )
    min_new_labels: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Start a job after this many new labels (0: off).",
    )


class TrustPolicy(BaseModel):
    """The poisoned-feedback defence (``pocketml.loop.filter_samples``, docs/loop.md)."""

    model_config = _STRICT

    max_per_device: int = Field(200, ge=1, le=1_000_000, description="Samples a device may count.")
    teacher_confidence: float = Field(
        0.8,
        gt=0.5,
        le=1.0,
        description="Teacher top probability that makes it a check.",
    )
    neighbours: int = Field(
        7, ge=1, le=100, description="Nearest inputs of other devices that vote on a label."
    )
    min_neighbour_devices: int = Field(
        3, ge=2, le=100, description="Voting devices among the neighbours for a check."
    )
    outlier_z: float = Field(
        3.5,
        gt=0,
        le=100,
        description="Robust z of a disagreement rate that excludes.",
    )
    outlier_floor: float = Field(
        0.3, ge=0, le=1, description="A device is excluded only at or above this disagreement rate."
    )
    min_scale: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Smallest spread (1.4826 MAD) z divides by.",
    )
    min_checked: int = Field(
        3, ge=1, le=100_000, description="Checks before a device's rate counts in the median."
    )
    outlier_p: float = Field(
        0.001,
        gt=0,
        lt=0.5,
        description="Binomial tail of a device's disagreements (at the fleet rate) that excludes.",
    )


class GatePolicy(BaseModel):
    """What a candidate must show against the champion (``pocketml.loop.evaluate_gate``)."""

    model_config = _STRICT

    min_accuracy: float = Field(0.5, ge=0, le=1, description="Value threshold on every set.")
    max_drop: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Largest accuracy drop vs the champion on the golden holdout (0: never worse).",
    )
    required_gain: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Fresh gain needed (alert/labels/manual).",
    )
    schedule_margin: float = Field(
        0.005,
        ge=0,
        le=1,
        description="Fresh trail allowed (schedule trigger).",
    )
    max_class_drop: float = Field(
        0.05, ge=0, le=1, description="Largest drop vs the champion in any device class (fresh)."
    )
    min_class_samples: int = Field(
        30, ge=1, le=1_000_000, description="Fresh samples of a device class before it is judged."
    )
    min_fresh_samples: int = Field(
        30, ge=1, le=1_000_000, description="Fresh samples before the change rule reads them."
    )
    bootstrap: int = Field(1000, ge=100, le=100_000, description="Paired bootstrap resamples.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Level of the interval on the gain.")
    seed: int = Field(0, ge=0, description="Seed of the bootstrap (the gate is reproducible).")


class RolloutPolicy(BaseModel):
    """How a blessed candidate rolls out (``RolloutService.create``'s arguments)."""

    model_config = _STRICT

    schedule: tuple[float, ...] = Field((5.0, 25.0, 100.0), min_length=1, max_length=20)
    min_samples: int = Field(200, ge=1, le=10_000_000)
    min_dwell_s: float = Field(3600.0, ge=0, le=30 * 86400)
    on_breach: Literal["rollback", "pause"] = "rollback"
    guardrails: dict[str, Any] = Field(default_factory=dict)


class LoopPolicy(BaseModel):
    """A model's loop policy; every field has its default here and only here."""

    model_config = _STRICT

    enabled: bool = Field(True, description="Let triggers start jobs (a manual run always may).")
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy)
    min_labels_for_alert: int = Field(
        100,
        ge=0,
        le=10_000_000,
        description="New labelled samples (since the last job) before an alert starts a job.",
    )
    retry_failed_after_s: float = Field(
        600.0,
        ge=0,
        le=30 * 86400,
        description="After a failed job, wait this long before a trigger may start another.",
    )
    sample_weight: int = Field(1, ge=1, le=100, description="Times each kept sample counts.")
    holdout_share: float = Field(
        0.3, gt=0, lt=1, description="Share of trusted samples held out of training for the gate."
    )
    trust: TrustPolicy = Field(default_factory=TrustPolicy)
    gate: GatePolicy = Field(default_factory=GatePolicy)
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)

    @field_validator("triggers")
    @classmethod
    def _known_metrics(cls, triggers: TriggerPolicy) -> TriggerPolicy:
        from pocketml.monitor.alerts import KNOWN_METRICS

        unknown = [m for m in triggers.alert_metrics if m not in KNOWN_METRICS]
        if unknown:
            raise ValueError(
                f"unknown alert metric(s) {', '.join(unknown)}; known: {', '.join(KNOWN_METRICS)}"
            )
        return triggers

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what ``parse_policy`` reads back)."""
        return self.model_dump(mode="json")


def parse_policy(raw: Any) -> LoopPolicy:
    """Validate a policy document (missing keys: defaults).

    Raises:
        ValidationFailed: an unknown key or a bad value, each named with its path.
    """
    try:
        policy = LoopPolicy.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'policy'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ValidationFailed(f"invalid loop policy: {problems}.") from exc
    from pocketml.delivery import parse_guardrails, validate_schedule

    try:
        validate_schedule(policy.rollout.schedule)
        parse_guardrails(policy.rollout.guardrails, policy.rollout.min_samples)
    except InvalidInput as exc:  # delivery's own checks: the same 422 here
        raise ValidationFailed(f"invalid loop policy: rollout: {exc}") from exc
    return policy
