"""Pydantic models of federated learning: the operator's tasks and the device messages.

Request bodies forbid unknown fields. The task settings' bounds live once, in
``pocketml.federated.parse_task_spec`` (the CLI and the service use it too); ``TaskCreate``
documents the fields and their types, and a value out of bounds answers 400 naming it.
The device side is docs/federated-protocol.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pocketml.bounds import Bounded, Text
from pocketml.protocol import DEVICE_ID_PATTERN, LEAVE_REASONS, SECAGG_PHASES, TASK_ID_PATTERN

__all__ = [
    "JoinPublic",
    "JoinRequest",
    "LeaveRequest",
    "RoundPublic",
    "SecAggKeysRequest",
    "SecAggSharesRequest",
    "SecAggStatePublic",
    "SecAggUnmaskRequest",
    "TaskCreate",
    "TaskList",
    "TaskPublic",
    "UploadPublic",
]


class _Strict(Bounded):
    model_config = ConfigDict(extra="forbid")


DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN, description="The device's id.")]
_B64_32 = Annotated[str, Field(max_length=64, description="Base64 of 32 bytes.")]
_B64_SHARE = Annotated[str, Field(max_length=64, description="Base64 of a 33-byte share.")]
_B64_CIPHERTEXT = Annotated[
    str, Field(max_length=256, description="Base64 of an 82-byte share ciphertext.")
]

# ---------------------------------------------------------------- operators


class RecipeInput(_Strict):
    """Local training on the device (SGD on the head's softmax cross-entropy)."""

    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    l2: float | None = None


class RequiresInput(_Strict):
    """Conditions a device must meet to join."""

    charging: bool | None = None
    wifi: bool | None = None
    idle: bool | None = None
    min_samples: int | None = None


class TaskCreate(_Strict):
    """``POST /v1/admin/federated/tasks``: fields left out take their default.

    Defaults: 10 rounds of 10 clients, ``min_reports`` 2, 600 s per round (a quarter of it
    to join), 3 retries, FedAvg, ``clip_norm`` 1, no DP, no SecAgg, devices charging and
    on Wi-Fi. See docs/federated.md, "Tasks", for every setting.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "digits",
                    "version": 3,
                    "rounds": 20,
                    "clients_per_round": 20,
                    "min_reports": 10,
                    "noise_multiplier": 1.0,
                    "population": 5000,
                    "secagg": True,
                }
            ]
        },
    )

    model: Annotated[Text, Field(min_length=1, max_length=64, description="The model.")]
    version: int = Field(description="The version to start from (must be federatable).")
    rounds: int | None = None
    clients_per_round: int | None = None
    min_reports: int | None = None
    round_timeout_s: float | None = None
    join_window_s: float | None = None
    max_retries: int | None = None
    recipe: RecipeInput | None = None
    requires: RequiresInput | None = None
    targeting: list[dict[str, Any]] | None = Field(
        None, max_length=64, description="Rollout-style targeting rules (who is announced)."
    )
    aggregator: Literal["fedavg", "trimmed_mean", "median"] | None = None
    trim_fraction: float | None = None
    max_sample_weight: int | None = None
    clip_norm: float | None = None
    adaptive_clipping: bool | None = None
    noise_multiplier: float | None = None
    delta: float | None = None
    population: int | None = None
    secagg: bool | None = None
    secagg_threshold: float | None = None
    secagg_neighbours: int | None = None
    secagg_step_timeout_s: float | None = None
    local_noise_std: float | None = None
    seed: int | None = None
    fedbuff: bool | None = None
    fedbuff_buffer: int | None = None
    fedbuff_max_staleness: int | None = None
    fedbuff_staleness_exponent: float | None = None
    fedbuff_server_learning_rate: float | None = None
    rollout: dict[str, Any] | None = Field(
        None,
        description="Start a staged rollout of the result with these rollout options "
        "(schedule, min_dwell_s, min_samples, on_breach, guardrails); left out: the "
        "result stays a candidate.",
    )

    def spec(self) -> dict[str, Any]:
        """The settings given, for ``parse_task_spec`` (the model name apart)."""
        return self.model_dump(exclude_none=True, exclude={"model"})


class RoundPublic(BaseModel):
    """One round (attempt) of a task."""

    number: int
    state: Literal["open", "aggregated", "no_model", "failed", "cancelled"]
    phase: str
    opened_at: float
    join_until: float
    deadline: float
    selected: int
    reports: int
    clip_norm: float
    outcome: dict[str, Any] | None = Field(
        description="Reports, norms, ε after the round, survivors and dropouts (SecAgg), "
        "or the reason it closed without a model."
    )
    closed_at: float | None


class TaskPublic(BaseModel):
    """A federated task."""

    id: str
    model: str
    base_version: int
    state: Literal["running", "finishing", "succeeded", "failed", "cancelled"]
    spec: dict[str, Any]
    round: int
    rounds_done: int
    retries_used: int
    clients_total: int
    clip_norm: float
    epsilon: float | None = Field(description="ε spent so far (null without DP).")
    delta: float | None
    result_version: int | None = Field(description="The candidate version pushed at the end.")
    rollout_id: str | None = Field(
        None, description="The staged rollout of the result, when the task started one."
    )
    error: str | None
    log: list[str]
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None
    rounds: list[RoundPublic] = Field(default_factory=list)


class TaskList(BaseModel):
    """Tasks, newest first (without their rounds)."""

    items: list[TaskPublic]


# ---------------------------------------------------------------- devices


class Conditions(_Strict):
    """The device's state now."""

    charging: bool
    wifi: bool
    idle: bool


class JoinRequest(_Strict):
    """``POST /v1/federated/tasks/{task_id}/join``."""

    device_id: DeviceId
    round: int = Field(ge=1, le=2**31 - 1)
    conditions: Conditions
    num_samples: int = Field(ge=0, le=10**9)
    base_version: int = Field(ge=1, le=2**31 - 1)


class JoinPublic(BaseModel):
    """The device is selected for the round."""

    task_id: str = Field(pattern=TASK_ID_PATTERN)
    round: int
    selected: Literal[True]
    client_id: int
    secagg: bool
    round_url: str
    deadline: float


class UploadPublic(BaseModel):
    """An upload or SecAgg message was stored (``duplicate``: a retry, stored before)."""

    accepted: bool
    duplicate: bool
    round: int
    received: int


class SecAggStatePublic(BaseModel):
    """``GET .../rounds/{round}/secagg``: the phase and what this device needs for it."""

    phase: Literal[SECAGG_PHASES]  # type: ignore[valid-type]
    deadline: float
    poll_after_s: float
    config: dict[str, Any] | None
    roster: dict[str, dict[str, str]] | None
    inbox: dict[str, str] | None
    survivors: list[int] | None
    dropped: list[int] | None


class SecAggKeysRequest(_Strict):
    """Step 1: the device's two X25519 public keys and its seed commitment."""

    device_id: DeviceId
    cipher_public: _B64_32
    mask_public: _B64_32
    seed_commitment: _B64_32


class SecAggSharesRequest(_Strict):
    """Step 2: one ciphertext per neighbour in the roster (recipient id -> base64)."""

    device_id: DeviceId
    shares: dict[str, _B64_CIPHERTEXT] = Field(max_length=1000)


class SecAggUnmaskRequest(_Strict):
    """Step 4: shares of survivors' self-mask seeds and dropped clients' mask keys."""

    device_id: DeviceId
    self_mask_shares: dict[str, _B64_SHARE] = Field(default_factory=dict, max_length=1000)
    mask_key_shares: dict[str, _B64_SHARE] = Field(default_factory=dict, max_length=1000)


class LeaveRequest(_Strict):
    """``POST .../rounds/{round}/leave``: the device gives up the round."""

    device_id: DeviceId
    reason: Literal[LEAVE_REASONS]  # type: ignore[valid-type]
