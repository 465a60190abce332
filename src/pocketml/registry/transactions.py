"""Connection-level registry writes for other services' transactions.

A rollout's ``complete`` promotes its candidate; deleting a model removes its rollouts
and experiments too. Such moves must commit the registry rows and their own rows in ONE
transaction with their state check inside it, so the service that owns the move opens
the write transaction and calls these helpers on its connection. ``lock_model_row``
comes first: every writer that changes a model's versions or what depends on them takes
that lock before any other row, so they serialise without deadlocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pocketml.errors import NotFound
from pocketml.registry._orm import Model, ModelVersion, Variant
from pocketml.registry.store import model_not_found

__all__ = [
    "LockedModel",
    "delete_model_rows",
    "lock_model_row",
    "promote_in",
    "referenced_keys",
    "update_model_row",
]

_MODELS: sa.Table = Model.__table__  # type: ignore[assignment]
_VERSIONS: sa.Table = ModelVersion.__table__  # type: ignore[assignment]
_VARIANTS: sa.Table = Variant.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class LockedModel:
    """A model row read under its lock, inside the caller's write transaction."""

    id: str
    app_id: str
    name: str
    description: str
    schema: dict[str, Any]
    production_version: int | None
    versions: int


def lock_model_row(
    conn: sa.Connection, app_id: str, *, name: str | None = None, model_id: str | None = None
) -> LockedModel:
    """Lock one of the app's models (by name or id) until the caller's transaction ends.

    ``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the connection's ``BEGIN IMMEDIATE``
    already holds the database's write lock. Call it first in the transaction.

    Raises:
        NotFound: no such model in the app (or it was deleted meanwhile).
    """
    key = _MODELS.c.name == name if name is not None else _MODELS.c.id == model_id
    row = conn.execute(
        sa.select(_MODELS.c.id, _MODELS.c.name, _MODELS.c.description, _MODELS.c.schema)
        .where(_MODELS.c.app_id == app_id, key)
        .with_for_update()
    ).first()
    if row is None:
        raise model_not_found(name or str(model_id))
    production = conn.scalar(
        sa.select(_VERSIONS.c.version).where(
            _VERSIONS.c.model_id == row.id, _VERSIONS.c.stage == "production"
        )
    )
    total = conn.scalar(
        sa.select(sa.func.count()).select_from(_VERSIONS).where(_VERSIONS.c.model_id == row.id)
    )
    return LockedModel(
        id=row.id,
        app_id=app_id,
        name=row.name,
        description=row.description,
        schema=dict(row.schema or {}),
        production_version=production,
        versions=int(total or 0),
    )


def promote_in(conn: sa.Connection, model: LockedModel, version: int) -> None:
    """Make ``version`` the model's production version, archiving the previous one.

    Raises:
        NotFound: the model has no such version.
    """
    version_id = conn.scalar(
        sa.select(_VERSIONS.c.id).where(
            _VERSIONS.c.model_id == model.id, _VERSIONS.c.version == version
        )
    )
    if version_id is None:
        raise NotFound(f"model {model.name!r} has no version {version}.")
    if model.production_version == version:
        return
    conn.execute(
        sa.update(_VERSIONS)
        .where(_VERSIONS.c.model_id == model.id, _VERSIONS.c.stage == "production")
        .values(stage="archived")
    )
    conn.execute(
        sa.update(_VERSIONS).where(_VERSIONS.c.id == version_id).values(stage="production")
    )


def update_model_row(
    conn: sa.Connection, model: LockedModel, description: str, schema: dict[str, Any]
) -> None:
    """Replace a locked model's description and schema (already validated)."""
    conn.execute(
        sa.update(_MODELS)
        .where(_MODELS.c.id == model.id)
        .values(description=description, schema=schema)
    )


def delete_model_rows(conn: sa.Connection, model: LockedModel) -> set[str]:
    """Delete a locked model, its versions and their variants' rows.

    Returns:
        The artifact keys (model files and packages) its variants referenced; delete
        the ones nothing else references after the transaction commits.
    """
    version_ids = sa.select(_VERSIONS.c.id).where(_VERSIONS.c.model_id == model.id)
    keys: set[str] = set()
    for model_key, package_key in conn.execute(
        sa.select(_VARIANTS.c.model_key, _VARIANTS.c.package_key).where(
            _VARIANTS.c.version_id.in_(version_ids)
        )
    ):
        keys.update((model_key, package_key))
    conn.execute(sa.delete(_VARIANTS).where(_VARIANTS.c.version_id.in_(version_ids)))
    conn.execute(sa.delete(_VERSIONS).where(_VERSIONS.c.model_id == model.id))
    conn.execute(sa.delete(_MODELS).where(_MODELS.c.id == model.id))
    return keys


def referenced_keys(conn: sa.Connection, keys: set[str]) -> set[str]:
    """The subset of ``keys`` some variant still references (as model file or package)."""
    if not keys:
        return set()
    query = sa.select(_VARIANTS.c.model_key, _VARIANTS.c.package_key).where(
        sa.or_(_VARIANTS.c.model_key.in_(keys), _VARIANTS.c.package_key.in_(keys))
    )
    return {key for row in conn.execute(query) for key in row if key in keys}
