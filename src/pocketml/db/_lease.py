"""A named lease in a database row, so one replica at a time runs a background job.

Several server replicas share one database; a job such as the rollout evaluator or the
Parquet exporter must run on only one of them at a time. The lease is one row per name
with an ``owner`` and an ``expires_at`` (unix seconds), taken or renewed with ``UPDATE ...
WHERE name = ? AND (expires_at < now OR owner = me)`` (an ``INSERT`` the first time: the
primary key lets exactly one of two racing inserts win). One conditional statement, so it
is atomic on SQLite and PostgreSQL alike, and a holder that dies simply lets it expire.

The row may live in a table with more columns (the exporter keeps its watermark beside
its lease): ``new_row`` gives their values for the first insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import exc

from pocketml.db._engine import WRITE, translate_errors

__all__ = ["Lease", "LeaseHolder"]


class LeaseHolder(NamedTuple):
    """Who holds a lease row and until when (unix seconds; in the past once expired)."""

    owner: str
    expires_at: float


@dataclass(frozen=True)
class Lease:
    """The lease ``name`` in ``table`` (columns ``name``, ``owner``, ``expires_at``).

    Args:
        engine: the database.
        table: the lease table.
        name: the lease's row.
        what: how messages name it ("the evaluator lease").
        new_row: values of the table's other columns for the first insert.
    """

    engine: sa.Engine
    table: sa.Table
    name: str
    what: str = "the lease"
    new_row: Mapping[str, Any] = field(default_factory=dict)

    def acquire(self, owner: str, now: float, ttl_s: float) -> bool:
        """Take the lease for ``owner`` until ``now + ttl_s``, or renew it if ``owner`` holds it.

        Returns:
            True when ``owner`` holds the lease afterwards; False when another owner's
            lease has not expired.

        Raises:
            Unavailable: the database cannot be reached.
        """
        t = self.table
        update = (
            sa.update(t)
            .where(t.c.name == self.name, sa.or_(t.c.expires_at < now, t.c.owner == owner))
            .values(owner=owner, expires_at=now + ttl_s)
        )
        with translate_errors(f"take {self.what}"):
            with self._write() as conn, conn.begin():
                if conn.execute(update).rowcount == 1:
                    return True
            try:
                with self._write() as conn, conn.begin():
                    conn.execute(
                        sa.insert(t).values(
                            **self.new_row, name=self.name, owner=owner, expires_at=now + ttl_s
                        )
                    )
                return True
            except exc.IntegrityError:  # the row exists and another owner holds it
                return False

    def release(self, owner: str) -> None:
        """Give the lease up early (only when ``owner`` holds it).

        Raises:
            Unavailable: the database cannot be reached (the lease then simply expires).
        """
        t = self.table
        query = sa.update(t).where(t.c.name == self.name, t.c.owner == owner).values(expires_at=0.0)
        with translate_errors(f"release {self.what}"), self._write() as conn, conn.begin():
            conn.execute(query)

    def holder(self) -> LeaseHolder | None:
        """The current or last holder, or None when the lease was never taken.

        Raises:
            Unavailable: the database cannot be reached.
        """
        t = self.table
        query = sa.select(t.c.owner, t.c.expires_at).where(t.c.name == self.name)
        with translate_errors(f"read {self.what}"), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else LeaseHolder(row.owner, float(row.expires_at))

    def _write(self) -> sa.Connection:
        return self.engine.connect().execution_options(**WRITE)
