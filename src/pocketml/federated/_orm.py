"""SQLAlchemy tables of federated tasks (Alembic revision ``0014``; rows never leave
``_store.py``).

- ``federated_tasks``: one task (its config, the current global head, the privacy spent,
  the result version). "One active task per model" is a unique ``active_key``
  (``<app_id>/<model>`` while running, NULL afterwards).
- ``federated_rounds``: one round of a task (``number`` grows with every attempt): its
  state, SecAgg phase and deadlines, and the signed round document (which freezes the
  global weights the round started from).
- ``federated_participants``: a selected device of a round: its ``client_id``, what it
  sent (a plain update until aggregation, or a masked input, and whether the device
  clipped it: revision ``0015``), SecAgg keys and unmask answer. Plain updates and
  masked inputs are deleted once the round is over.
- ``federated_shares``: the SecAgg mailbox (ciphertexts the server cannot read).
- ``federated_leases``: ``pocketml.db.Lease`` rows; a round is advanced and aggregated
  only under the lease of its task, so two replicas never aggregate it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from pocketml.db import Base, UTCDateTime

__all__ = ["LeaseRow", "ParticipantRow", "RoundRow", "ShareRow", "TaskRow"]


class TaskRow(Base):
    """One federated task."""

    __tablename__ = "federated_tasks"
    __table_args__ = (
        sa.UniqueConstraint("active_key"),
        sa.Index(None, "app_id", "created_at"),
        sa.Index(None, "state"),
    )

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    app_id: Mapped[str] = mapped_column(sa.ForeignKey("apps.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(sa.String(64))
    base_version: Mapped[int] = mapped_column(sa.Integer)
    active_key: Mapped[str | None] = mapped_column(sa.String(120), nullable=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    head: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    weights: Mapped[bytes] = mapped_column(sa.LargeBinary)
    clip_norm: Mapped[float] = mapped_column(sa.Double)
    round: Mapped[int] = mapped_column(sa.Integer)
    rounds_done: Mapped[int] = mapped_column(sa.Integer)
    retries_used: Mapped[int] = mapped_column(sa.Integer)
    clients_total: Mapped[int] = mapped_column(sa.Integer)
    epsilon: Mapped[float | None] = mapped_column(sa.Double, nullable=True)
    result_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    rollout_id: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    log: Mapped[list[Any]] = mapped_column(sa.JSON)
    created_by: Mapped[str] = mapped_column(sa.String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RoundRow(Base):
    """One round (attempt) of a task."""

    __tablename__ = "federated_rounds"

    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("federated_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    number: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    phase: Mapped[str] = mapped_column(sa.String(16))
    opened_at: Mapped[float] = mapped_column(sa.Double)
    join_until: Mapped[float] = mapped_column(sa.Double)
    deadline: Mapped[float] = mapped_column(sa.Double)
    phase_deadline: Mapped[float] = mapped_column(sa.Double)
    clip_norm: Mapped[float] = mapped_column(sa.Double)
    document: Mapped[bytes] = mapped_column(sa.LargeBinary)
    signature: Mapped[bytes] = mapped_column(sa.LargeBinary)
    key_id: Mapped[str] = mapped_column(sa.String(64))
    secagg: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    selected: Mapped[int] = mapped_column(sa.Integer)
    reports: Mapped[int] = mapped_column(sa.Integer)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    closed_at: Mapped[float | None] = mapped_column(sa.Double, nullable=True)


class ParticipantRow(Base):
    """A device selected for a round, and what it sent."""

    __tablename__ = "federated_participants"
    __table_args__ = (sa.UniqueConstraint("task_id", "round", "client_id"),)

    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("federated_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    round: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    device_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    client_id: Mapped[int] = mapped_column(sa.BigInteger)
    state: Mapped[str] = mapped_column(sa.String(16))
    num_samples: Mapped[int] = mapped_column(sa.Integer)
    joined_at: Mapped[float] = mapped_column(sa.Double)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    update_sha256: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    payload: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True)
    advert: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    shared: Mapped[bool] = mapped_column(sa.Boolean)
    clipped: Mapped[bool | None] = mapped_column(sa.Boolean, nullable=True)
    unmask: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)


class ShareRow(Base):
    """One SecAgg ciphertext from ``sender`` to ``recipient`` (the server cannot read it)."""

    __tablename__ = "federated_shares"

    task_id: Mapped[str] = mapped_column(
        sa.ForeignKey("federated_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    round: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    sender: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    recipient: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    ciphertext: Mapped[bytes] = mapped_column(sa.LargeBinary)


class LeaseRow(Base):
    """A ``pocketml.db.Lease`` row (one per task)."""

    __tablename__ = "federated_leases"

    name: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    owner: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[float] = mapped_column(sa.Double)
