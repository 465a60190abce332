"""SQLAlchemy tables of the loop: retraining jobs and the per-model loop policy.

They share the one ``Base`` and Alembic history (revision ``0013``); rows never leave
``_jobs.py``. "One active job per model" is a constraint, not a convention: a job is
active (queued or running) while ``active_key`` holds ``<app_id>/<model>``, NULL
afterwards, under a unique constraint (NULLs never collide on SQLite or PostgreSQL), so two
triggers at once, on one replica or two, create one job. A running job carries its own
lease (``lease_owner``, ``lease_expires_at`` in unix seconds), taken by a conditional
update, renewed between steps; a job whose lease expired was abandoned by a dead server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import Base, UTCDateTime

__all__ = ["LoopJobRow", "LoopPolicyRow"]


class LoopJobRow(Base):
    """One retraining job: trigger, state, steps with timings, log, candidate, verdict."""

    __tablename__ = "loop_jobs"
    __table_args__ = (
        sa.UniqueConstraint("active_key"),
        sa.Index(None, "app_id", "model", "created_at"),
        sa.Index(None, "state"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    active_key: Mapped[str | None] = mapped_column(sa.String(120), nullable=True)
    trigger: Mapped[str] = mapped_column(sa.String(16))
    trigger_details: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(16))
    step: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    steps: Mapped[list[Any]] = mapped_column(sa.JSON)
    log: Mapped[list[Any]] = mapped_column(sa.JSON)
    champion_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    candidate_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    samples: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    gate: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    rollout_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


class LoopPolicyRow(Base):
    """A model's loop policy (``LoopPolicy`` JSON; no row: the defaults)."""

    __tablename__ = "loop_policies"

    model_id: Mapped[str] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(sa.String(64))
    policy: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated_by: Mapped[str] = mapped_column(sa.String(128))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
