"""SQLAlchemy tables of targeting, staged rollouts, their audit log and the evaluator lease.

They share the registry's ``Base`` and Alembic history (revision ``0003``). Rows never
leave ``delivery/_rollout_store.py``. At most one active (running or paused) rollout per
model and channel: ``active_key`` is ``"<model_id>:<channel>"`` while active and NULL
afterwards, under a unique constraint (NULLs never collide on SQLite or PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import BIGINT_PK, Base, JSONDict, UTCDateTime

__all__ = [
    "ChannelTargetingRow",
    "EvaluatorLeaseRow",
    "ExperimentRow",
    "RolloutAuditRow",
    "RolloutRow",
]


class ChannelTargetingRow(Base):
    """The targeting rules of one model's channel (no row: every device)."""

    __tablename__ = "channel_targeting"

    model_id: Mapped[str] = mapped_column(
        sa.ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    rules: Mapped[list[Any]] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RolloutRow(Base):
    """One staged rollout of a candidate version into a model's channel."""

    __tablename__ = "rollouts"
    __table_args__ = (sa.UniqueConstraint("active_key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(32))
    candidate_version: Mapped[int] = mapped_column(sa.Integer)
    control_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    active_key: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)
    schedule: Mapped[list[Any]] = mapped_column(sa.JSON)
    step: Mapped[int] = mapped_column(sa.Integer)
    percent: Mapped[float] = mapped_column(sa.Double)
    min_dwell_s: Mapped[float] = mapped_column(sa.Double)
    min_samples: Mapped[int] = mapped_column(sa.Integer)
    on_breach: Mapped[str] = mapped_column(sa.String(16))
    guardrails: Mapped[JSONDict] = mapped_column(sa.JSON)
    targeting: Mapped[list[Any]] = mapped_column(sa.JSON)
    salt: Mapped[str] = mapped_column(sa.String(64))
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_evaluation: Mapped[JSONDict] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExperimentRow(Base):
    """One A/B experiment: arms -> versions with weights, a primary metric, a winner."""

    __tablename__ = "experiments"
    __table_args__ = (sa.UniqueConstraint("active_key"),)

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(sa.ForeignKey("models.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(32))
    state: Mapped[str] = mapped_column(sa.String(16))
    active_key: Mapped[str | None] = mapped_column(sa.String(80), nullable=True)
    arms: Mapped[list[Any]] = mapped_column(sa.JSON)
    metric: Mapped[str] = mapped_column(sa.String(32))
    salt: Mapped[str] = mapped_column(sa.String(64))
    winner: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RolloutAuditRow(Base):
    """One transition of a rollout: who or what, when, why, and the numbers behind it."""

    __tablename__ = "rollout_audit"

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(32))
    from_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    to_state: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    reason: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[JSONDict] = mapped_column(sa.JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class EvaluatorLeaseRow(Base):
    """A named lease (owner, expires_at in epoch seconds) so one replica evaluates at a time."""

    __tablename__ = "evaluator_leases"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[float] = mapped_column(sa.Double)
