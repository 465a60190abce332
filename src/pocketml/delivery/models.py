"""Correcting and deleting a model: the admin's repair tools, each one audited transaction.

A model's rows span the registry (model, versions, variants) and delivery (targeting,
rollouts, experiments, policies), so both moves live here, where the audit log is, and
run like every rollout move: ONE write transaction that locks the model row first.

- ``update``: the description, and the schema, validated exactly like at creation.
  While the model has no version any valid schema is accepted. Once versions exist the
  inputs and outputs must stay as they are — every version's package carries the schema
  it was signed with, and devices and the cloud feed those inputs — so only the other
  sections (preprocessing, monitoring) change, for the versions pushed afterwards.
  Anything else answers 409: create a new model instead.
- ``delete``: refused (409) while a rollout is active or an experiment runs, unless
  ``force``. It deletes the model, its versions and variants, targeting, rollouts,
  experiments and version policies in one transaction (the audit rows of the rollouts
  stay: they are history); the artifact blobs that no other variant references are
  removed after the commit (a failure there leaves harmless orphans, logged).

Telemetry already received for the model stays in the telemetry store and Parquet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pocketml.db import utcnow
from pocketml.delivery._experiment_store import ExperimentStore
from pocketml.delivery.rollouts import RolloutService, _audit
from pocketml.errors import Conflict, PocketMLError
from pocketml.registry import ModelInfo, VersionInfo
from pocketml.registry.transactions import delete_model_rows, referenced_keys, update_model_row

__all__ = ["ModelAdmin", "ModelDeleted"]

logger = logging.getLogger(__name__)

_FIXED_SECTIONS = ("inputs", "outputs")


@dataclass(frozen=True)
class ModelDeleted:
    """What deleting a model removed."""

    name: str
    versions: int
    rollouts: tuple[str, ...]
    experiments: tuple[str, ...]
    blobs: int


class ModelAdmin:
    """Updates and deletes models; audits both in the rollout audit log.

    Args:
        rollouts: the rollout service (registry, stores, change notifications).
    """

    def __init__(self, rollouts: RolloutService) -> None:
        self.rollouts = rollouts
        self.registry = rollouts.registry
        self.store = rollouts.store
        self.experiments = ExperimentStore(rollouts.store.engine)

    def update(
        self,
        app_id: str,
        name: str,
        *,
        description: str | None = None,
        schema: dict[str, Any] | None = None,
        actor: str = "admin",
    ) -> ModelInfo:
        """Change a model's description and/or schema (None: keep it).

        Raises:
            NotFound: no such model.
            SchemaError: the schema is not a valid ModelSchema (the message names the field).
            Conflict: the schema changes inputs or outputs while versions exist.
        """
        clean = self.registry.validate_schema(schema) if schema is not None else None
        moment = utcnow()
        with self.store.model_transaction(app_id, f"update model {name!r}", name=name) as (
            conn,
            model,
        ):
            new_schema = clean if clean is not None else model.schema
            if model.versions and any(
                new_schema.get(k) != model.schema.get(k) for k in _FIXED_SECTIONS
            ):
                raise Conflict(
                    f"model {name!r} has {model.versions} version(s), and its schema's inputs "
                    "and outputs cannot change any more: every version's package carries the "
                    "schema it was signed with. Keep inputs and outputs as they are, or create "
                    "a new model for the new schema."
                )
            changed = [
                field
                for field, old, new in (
                    ("description", model.description, description),
                    ("schema", model.schema, clean),
                )
                if new is not None and new != old
            ]
            update_model_row(
                conn,
                model,
                model.description if description is None else description,
                new_schema,
            )
            audit = _audit(model.id, app_id, "model.update", None, None, actor, "", moment)
            audit["details"] = {"model": name, "changed": changed}
            self.store.insert_audit(conn, audit)
        self.rollouts.notify_changed(app_id)
        logger.info("updated model %s of app %s (%s)", name, app_id, ", ".join(changed))
        return self.registry.get_model(app_id, name)

    def set_stage(
        self, app_id: str, name: str, version: int, stage: str, *, actor: str = "admin"
    ) -> VersionInfo:
        """Move a version to candidate, production or archived, audited (``version.stage``).

        The registry's stage change and the audit entry are one transaction; devices see
        the change at their next check-in (the delivery cache is told).

        Raises:
            NotFound: no such version. InvalidInput: unknown stage.
            Conflict: an active rollout needs the current stages (see ``Registry.set_stage``).
        """
        moment = utcnow()

        def audit(conn: sa.Connection, model_id: str, old_stage: str) -> None:
            entry = _audit(model_id, app_id, "version.stage", old_stage, stage, actor, "", moment)
            entry["details"] = {"model": name, "version": version}
            self.store.insert_audit(conn, entry)

        info = self.registry.set_stage(app_id, name, version, stage, on_change=audit)
        self.rollouts.notify_changed(app_id)
        return info

    def delete(
        self, app_id: str, name: str, *, force: bool = False, actor: str = "admin"
    ) -> ModelDeleted:
        """Delete a model with everything that hangs off it (see the module docstring).

        Raises:
            NotFound: no such model.
            Conflict: a rollout is active or an experiment runs and ``force`` is False.
        """
        moment = utcnow()
        with self.store.model_transaction(app_id, f"delete model {name!r}", name=name) as (
            conn,
            model,
        ):
            active = [r.id for r in self.store.active_in(conn, model.id)]
            running = self.experiments.running_in(conn, model.id)
            if (active or running) and not force:
                what = [f"rollout {i}" for i in active] + [f"experiment {i}" for i in running]
                raise Conflict(
                    f"model {name!r} has {', '.join(what)} in progress; finish it first, or "
                    "delete anyway with force (pocketml models delete --force)."
                )
            rollouts = self.store.delete_model_in(conn, model.id)
            experiments = self.experiments.delete_model_in(conn, model.id)
            keys = delete_model_rows(conn, model)  # version policies go by foreign key
            audit = _audit(model.id, app_id, "model.delete", None, None, actor, "", moment)
            audit["details"] = {
                "model": name,
                "versions": model.versions,
                "rollouts": rollouts,
                "experiments": experiments,
                "interrupted": active + running,
                "force": force,
            }
            self.store.insert_audit(conn, audit)
        self.rollouts.notify_changed(app_id)
        blobs = self._delete_blobs(keys)
        logger.info("deleted model %s of app %s (%d versions)", name, app_id, model.versions)
        return ModelDeleted(name, model.versions, tuple(rollouts), tuple(experiments), blobs)

    def _delete_blobs(self, keys: set[str]) -> int:
        """Remove the blobs no variant references any more; the number removed."""
        try:
            with self.store.engine.connect() as conn:
                orphans = keys - referenced_keys(conn, keys)
            for key in sorted(orphans):
                self.registry.artifacts.delete(key)
        except PocketMLError as exc:  # the rows are gone; a blob left behind is harmless
            logger.warning("could not delete the artifacts of a deleted model: %s", exc)
            return 0
        return len(orphans)
