"""Pydantic models of the loop's admin API: jobs and the per-model loop policy.

The policy's body and answer are ``pocketml.loop.LoopPolicy`` itself (every field and
default has that one home); this module adds the job views. Imports pydantic and the
loop's policy only, so the CLI's ``AdminClient`` parses responses with the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketml.bounds import Bounded, Text

__all__ = ["JobCreate", "JobCreated", "JobList", "JobPublic"]


class JobCreate(Bounded):
    """A retraining job started by hand or by CI."""

    model_config = ConfigDict(extra="forbid")

    note: Text | None = Field(
        None, max_length=500, description="Why (kept in the job's trigger details)."
    )


class JobPublic(BaseModel):
    """One retraining job: trigger, state, step timings, log, candidate and gate."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    model: str
    trigger: str
    trigger_details: dict[str, Any]
    state: str
    step: str | None
    steps: list[dict[str, Any]]
    log: list[str]
    champion_version: int | None
    candidate_version: int | None
    samples: dict[str, Any]
    gate: dict[str, Any] | None
    rollout_id: str | None
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobCreated(BaseModel):
    """The job a run request created, or the model's active job it found (``created``)."""

    job: JobPublic
    created: bool


class JobList(BaseModel):
    """Jobs, newest first."""

    items: list[JobPublic]
