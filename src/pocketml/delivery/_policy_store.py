"""PolicyStore: the per-version policy overrides, on the registry's database engine."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pocketml.db import WRITE, translate_errors, utcnow
from pocketml.delivery._orm import VersionPolicyRow

__all__ = ["PolicyStore"]

_TABLE: sa.Table = VersionPolicyRow.__table__  # type: ignore[assignment]


class PolicyStore:
    """Reads and writes ``version_policies`` rows; returns plain dicts, never rows.

    Args:
        engine: the registry's open engine (one database, one migration history).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get_many(
        self, version_ids: list[str]
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]]:
        """The stored (hybrid, download, monitor, capture) overrides of these versions
        (absent: no row).

        Raises:
            Unavailable: the database cannot be reached.
        """
        if not version_ids:
            return {}
        table = _TABLE
        with translate_errors("read version policies"), self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    table.c.version_id,
                    table.c.hybrid,
                    table.c.download,
                    table.c.monitor,
                    table.c.capture,
                ).where(table.c.version_id.in_(version_ids))
            ).all()
        return {
            row[0]: (dict(row[1] or {}), dict(row[2] or {}), dict(row[3] or {}), dict(row[4] or {}))
            for row in rows
        }

    def upsert(
        self,
        app_id: str,
        version_id: str,
        hybrid: dict[str, Any],
        download: dict[str, Any],
        monitor: dict[str, Any] | None = None,
        capture: dict[str, Any] | None = None,
    ) -> None:
        """Replace the overrides of one version (insert or update, one transaction).

        Raises:
            Unavailable: the database cannot be reached.
        """
        table = _TABLE
        values = {
            "hybrid": hybrid,
            "download": download,
            "monitor": monitor or {},
            "capture": capture or {},
            "updated_at": utcnow(),
        }
        with (
            translate_errors("store the version policy"),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            updated = conn.execute(
                sa.update(table).where(table.c.version_id == version_id).values(**values)
            )
            if updated.rowcount == 0:
                conn.execute(
                    sa.insert(table).values(version_id=version_id, app_id=app_id, **values)
                )
