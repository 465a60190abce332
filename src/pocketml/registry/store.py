"""RegistryStore: the registry's rows in SQLite or PostgreSQL, behind typed methods.

Each method runs one transaction and returns frozen dataclasses; ORM rows never leave
this module. Every lookup is scoped by ``app_id``, so an object of another app is simply
not found. Writes that depend on what they read (version numbers, the production stage)
lock the model row first (``SELECT ... FOR UPDATE`` on PostgreSQL; ``BEGIN IMMEDIATE`` on
SQLite), and unique constraints back every rule up.

Transitions of other services that also change registry rows (a rollout's ``complete``
promotes its candidate; deleting a model removes its rollouts too) must commit both in
ONE transaction with their state check inside it. They run the transaction themselves
and call the connection-level helpers of ``registry/transactions.py`` (``lock_model_row``,
``promote_in``, ...), which lock the model row first: every such writer takes the model
lock before any other row, so they serialise without deadlocks.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from pocketml.db import WRITE, create_engine, run_migrations, translate_errors, utcnow
from pocketml.errors import Conflict, NotFound, Unavailable
from pocketml.registry._devicekeys import DeviceKeyStore, device_key_id
from pocketml.registry._keystore import SigningKeyStore
from pocketml.registry._orm import (
    App,
    AppDeviceKey,
    AppKey,
    AppKeyring,
    Model,
    ModelVersion,
    Variant,
)
from pocketml.registry._packageaccess import PackageAccessStore
from pocketml.registry._rows import (
    KeyRecord,
    NewVersion,
    app_info,
    key_record,
    key_row,
    model_info,
    variant_row,
    version_info,
)
from pocketml.registry._types import AppInfo, ModelInfo, Page, StoredPackage, VersionInfo

StageHook = Callable[[sa.Connection, str, str], None]
"""Called in a stage change's transaction with (connection, model id, old stage)."""

__all__ = ["DuplicateBuild", "RegistryStore", "VersionTaken", "new_id"]

# The delivery tables a stage change must respect (same database and Alembic history;
# named here, not imported, because delivery builds on the registry and not the reverse).
_ROLLOUTS = sa.table(
    "rollouts",
    sa.column("id"),
    sa.column("model_id"),
    sa.column("state"),
    sa.column("candidate_version"),
)
_EXPERIMENTS = sa.table(
    "experiments", sa.column("id"), sa.column("model_id"), sa.column("state"), sa.column("arms")
)


def new_id(prefix: str) -> str:
    """A random object id such as ``app_3f9c...`` (prefix + 20 hex characters)."""
    return f"{prefix}_{secrets.token_hex(10)}"


class VersionTaken(Conflict):
    """The version number is in use (a concurrent push may have taken it)."""


class DuplicateBuild(Conflict):
    """A version with exactly the same model files exists (a double push); ``version`` names it."""

    def __init__(self, model: str, version: int) -> None:
        super().__init__(
            f"{model} v{version} has exactly the same model files (the same variant sha256s) "
            f"as this push, so it would be a copy of that version. Use v{version}, or push "
            "again with --force (AdminClient.push_build(..., force=True), or 'force': true "
            "in the push metadata) to store the copy as a new version anyway."
        )
        self.model = model
        self.version = version


class RegistryStore(SigningKeyStore, DeviceKeyStore, PackageAccessStore):
    """SQLAlchemy implementation of the registry's storage. ``open()`` migrates.

    The signing-key methods (key states, keyrings, re-signed packages) come from
    ``SigningKeyStore`` in ``_keystore.py``; the device keys (several per app, rotation
    with an overlap) from ``DeviceKeyStore`` in ``_devicekeys.py``; who may fetch
    packages (public or private) from ``PackageAccessStore`` in ``_packageaccess.py``.
    """

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        """The open engine. Raises Unavailable when ``open()`` was not called."""
        if self._engine is None:
            raise Unavailable("the registry store is not open; call open() first.")
        return self._engine

    def open(self) -> None:
        """Create the engine and upgrade the database to the newest revision."""
        engine = create_engine(self.database_url)
        try:
            run_migrations(engine)
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine

    def close(self) -> None:
        """Dispose of the engine's connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @contextmanager
    def _session(self, action: str, *, write: bool = False) -> Iterator[Session]:
        with (
            translate_errors(action),
            Session(self.engine, expire_on_commit=False) as session,
            session.begin(),
        ):
            if write:
                session.connection(execution_options=WRITE)
            yield session

    # -- apps --------------------------------------------------------------------------

    def create_app(
        self,
        app_id: str,
        name: str,
        admin_sha256: str,
        device_sha256: str,
        key: KeyRecord,
        keyring: str,
    ) -> AppInfo:
        """Insert an app, its first signing key and keyring 1 (its canonical JSON).

        Raises Conflict on a duplicate name.
        """
        with self._session(f"create app {name!r}", write=True) as s:
            if s.scalar(sa.select(App.id).where(App.name == name)) is not None:
                raise Conflict(
                    f"an app named {name!r} exists already; app names are unique. "
                    "Pick another name."
                )
            now = utcnow()
            app = App(
                id=app_id,
                name=name,
                admin_token_sha256=admin_sha256,
                device_key_sha256=device_sha256,
                created_at=now,
            )
            s.add(app)
            s.flush()
            s.add(
                AppDeviceKey(
                    key_id=device_key_id(device_sha256),
                    app_id=app_id,
                    key_sha256=device_sha256,
                    created_at=now,
                )
            )
            s.add(key_row(key, now))
            s.add(AppKeyring(app_id=app_id, sequence=1, body=keyring, created_at=now))
            s.flush()
            return app_info(s, app)

    def list_apps(self) -> list[AppInfo]:
        """Every app, oldest first."""
        with self._session("list apps") as s:
            apps = s.scalars(sa.select(App).order_by(App.created_at, App.id)).all()
            return [app_info(s, app) for app in apps]

    def get_app(self, app_id: str) -> AppInfo:
        """One app. Raises NotFound."""
        with self._session("read app") as s:
            return app_info(s, _app_row(s, app_id))

    def find_credential(
        self, role: Literal["admin", "device"], sha256: str
    ) -> tuple[str, str] | None:
        """(app id, stored hash) of the app whose admin token / usable device key has this hash."""
        if role == "device":
            return self.find_device_key(sha256)
        with self._session("check credentials") as s:
            row = s.execute(
                sa.select(App.id, App.admin_token_sha256).where(App.admin_token_sha256 == sha256)
            ).first()
            return None if row is None else (row[0], row[1])

    def set_admin_token(self, app_id: str, sha256: str) -> None:
        """Replace the stored hash of the app's admin token."""
        with self._session("rotate credential", write=True) as s:
            _app_row(s, app_id, lock=True).admin_token_sha256 = sha256

    def get_key(self, app_id: str, key_id: str, *, kind: str) -> KeyRecord:
        """One of the app's keys of this kind. Raises NotFound (other apps' keys too)."""
        with self._session("read key") as s:
            row = s.scalars(
                sa.select(AppKey).where(
                    AppKey.app_id == app_id, AppKey.key_id == key_id, AppKey.kind == kind
                )
            ).first()
            if row is None:
                raise NotFound(f"no {kind} key {key_id!r} in this app.")
            return key_record(row)

    # -- models ------------------------------------------------------------------------

    def create_model(
        self, app_id: str, name: str, description: str, schema: dict[str, Any]
    ) -> ModelInfo:
        """Insert a model. Raises Conflict on a duplicate name, NotFound for no app."""
        with self._session(f"create model {name!r}", write=True) as s:
            _app_row(s, app_id)
            if _find_model(s, app_id, name) is not None:
                raise Conflict(
                    f"a model named {name!r} exists already in this app; push a new version "
                    "to it, or pick another name."
                )
            model = Model(
                id=new_id("mdl"),
                app_id=app_id,
                name=name,
                description=description,
                schema=schema,
                created_at=utcnow(),
            )
            s.add(model)
            s.flush()
            return model_info(model, None, None)

    def list_models(
        self, app_id: str, *, limit: int, offset: int, prefix: str | None
    ) -> Page[ModelInfo]:
        """A page of the app's models sorted by name."""
        conditions = [Model.app_id == app_id]
        if prefix:
            conditions.append(Model.name.startswith(prefix, autoescape=True))
        with self._session("list models") as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(Model).where(*conditions))
            rows = s.execute(
                sa.select(Model, _latest_version(), _production_version())
                .where(*conditions)
                .order_by(Model.name)
                .limit(limit)
                .offset(offset)
            ).all()
            items = tuple(model_info(row[0], row[1], row[2]) for row in rows)
            return Page(items=items, total=int(total or 0), limit=limit, offset=offset)

    def get_model(self, app_id: str, name: str) -> ModelInfo:
        """One model with its latest and production version numbers. Raises NotFound."""
        with self._session("read model") as s:
            row = s.execute(
                sa.select(Model, _latest_version(), _production_version()).where(
                    Model.app_id == app_id, Model.name == name
                )
            ).first()
            if row is None:
                raise model_not_found(name)
            return model_info(row[0], row[1], row[2])

    # -- versions ----------------------------------------------------------------------

    def next_version_number(self, app_id: str, model: str) -> int:
        """The latest version number of the model + 1 (1 for the first)."""
        with self._session("read version numbers") as s:
            row = _model_row(s, app_id, model)
            latest = s.scalar(
                sa.select(sa.func.max(ModelVersion.version)).where(ModelVersion.model_id == row.id)
            )
            return int(latest or 0) + 1

    def check_version_free(self, app_id: str, model: str, version: int) -> None:
        """Raise VersionTaken (a Conflict) when the model has this version already."""
        with self._session("read versions") as s:
            row = _model_row(s, app_id, model)
            if _find_version(s, row.id, version) is not None:
                raise _version_taken(model, version)

    def find_identical_version(
        self, app_id: str, model: str, sha256s: frozenset[str]
    ) -> int | None:
        """The number of a version whose variant sha256s are exactly ``sha256s``, if any."""
        with self._session("read versions") as s:
            return _identical_version(s, _model_row(s, app_id, model).id, sha256s)

    def insert_version(
        self,
        app_id: str,
        model: str,
        new: NewVersion,
        keys: list[KeyRecord],
        *,
        force: bool = False,
    ) -> VersionInfo:
        """Insert a version, its variants and content keys in one transaction.

        Unless ``force``, a version whose model files are exactly those of an existing
        version is refused; the check runs under the model row's lock, so of two identical
        pushes at once exactly one is stored.

        Raises:
            NotFound: no such model. VersionTaken: the number is in use.
            DuplicateBuild: an existing version has the same files (and not ``force``).
        """
        with self._session(f"store {model} v{new.version}", write=True) as s:
            row = _model_row(s, app_id, model, lock=True)
            if not force:
                same = _identical_version(s, row.id, frozenset(v.sha256 for v in new.variants))
                if same is not None:
                    raise DuplicateBuild(model, same)
            if _find_version(s, row.id, new.version) is not None:
                raise _version_taken(model, new.version)
            now = utcnow()
            for key in keys:
                s.add(key_row(key, now))
            version = ModelVersion(
                id=new.id,
                model_id=row.id,
                version=new.version,
                stage="candidate",
                dataset_fingerprint=new.dataset_fingerprint,
                parent_version=new.parent_version,
                source_framework=new.source_framework,
                params=new.params,
                metrics=new.metrics,
                run_record=new.run_record,
                card=new.card,
                created_at=now,
                reference_profile=new.reference_profile,
                reference_profile_sha256=new.reference_profile_sha256,
            )
            s.add(version)
            try:
                s.flush()
            except sa.exc.IntegrityError as exc:  # the unique constraint backs the check up
                raise _version_taken(model, new.version) from exc
            variants = [variant_row(app_id, version.id, v, now) for v in new.variants]
            s.add_all(variants)
            s.flush()
            return version_info(version, model, variants)

    def list_versions(
        self, app_id: str, model: str, *, stage: str | None, limit: int, offset: int
    ) -> Page[VersionInfo]:
        """A page of the model's versions, newest first."""
        with self._session("list versions") as s:
            row = _model_row(s, app_id, model)
            conditions = [ModelVersion.model_id == row.id]
            if stage is not None:
                conditions.append(ModelVersion.stage == stage)
            total = s.scalar(
                sa.select(sa.func.count()).select_from(ModelVersion).where(*conditions)
            )
            versions = s.scalars(
                sa.select(ModelVersion)
                .where(*conditions)
                .options(selectinload(ModelVersion.variants))
                .order_by(ModelVersion.version.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            items = tuple(version_info(v, model, v.variants) for v in versions)
            return Page(items=items, total=int(total or 0), limit=limit, offset=offset)

    def get_version(self, app_id: str, model: str, version: int) -> VersionInfo:
        """One version with its variants. Raises NotFound."""
        with self._session("read version") as s:
            row = _version_row(s, _model_row(s, app_id, model), version)
            return version_info(row, model, row.variants)

    def get_reference_profile(self, app_id: str, model: str, version: int) -> dict[str, Any] | None:
        """The version's reference profile JSON, or None without one. Raises NotFound."""
        with self._session("read version profile") as s:
            row = _version_row(s, _model_row(s, app_id, model), version)
            return None if row.reference_profile is None else dict(row.reference_profile)

    def set_stage(
        self,
        app_id: str,
        model: str,
        version: int,
        stage: str,
        on_change: StageHook | None = None,
    ) -> VersionInfo:
        """Set a version's stage; promoting to production archives the previous one.

        ``on_change(connection, model_id, old_stage)`` runs in the same transaction when the
        stage changes (the delivery layer writes its audit entry there).
        """
        with self._session(f"set the stage of {model} v{version}", write=True) as s:
            model_row = _model_row(s, app_id, model, lock=True)
            row = _version_row(s, model_row, version)
            if stage != row.stage:
                _check_no_rollout_needs(s, model_row, row, stage)
                if on_change is not None:
                    on_change(s.connection(), model_row.id, row.stage)
            if stage == "production" and row.stage != "production":
                s.execute(
                    sa.update(ModelVersion)
                    .where(
                        ModelVersion.model_id == model_row.id,
                        ModelVersion.stage == "production",
                    )
                    .values(stage="archived")
                )
            row.stage = stage
            s.flush()
            return version_info(row, model, row.variants)

    def delete_version(self, app_id: str, model: str, version: int) -> None:
        """Delete a version and its variant rows. Raises Conflict for a production one."""
        with self._session(f"delete {model} v{version}", write=True) as s:
            model_row = _model_row(s, app_id, model, lock=True)
            row = _version_row(s, model_row, version)
            if row.stage == "production":
                raise Conflict(
                    f"{model} v{version} is in production and cannot be deleted; "
                    "archive it instead (set its stage to archived), or promote another."
                )
            _check_no_rollout_needs(s, model_row, row, None)
            s.execute(sa.delete(Variant).where(Variant.version_id == row.id))
            s.execute(sa.delete(ModelVersion).where(ModelVersion.id == row.id))

    def get_package(self, app_id: str, package_id: str) -> StoredPackage:
        """Where one of the app's packages is stored. Raises NotFound."""
        with self._session("read package") as s:
            row = s.execute(
                sa.select(Variant.package_key, Variant.package_size, Variant.package_id)
                .where(Variant.app_id == app_id, Variant.package_id == package_id)
                .limit(1)
            ).first()
            if row is None:
                raise NotFound(f"no package {package_id!r} in this app.")
            return StoredPackage(key=row[0], size=int(row[1]), sha256=row[2])


# -- row helpers (private: rows stay in this module) -------------------------------------


def _app_row(s: Session, app_id: str, *, lock: bool = False) -> App:
    query = sa.select(App).where(App.id == app_id)
    app = s.scalars(query.with_for_update() if lock else query).first()
    if app is None:
        raise NotFound(f"no app with id {app_id!r}.")
    return app


def _find_model(s: Session, app_id: str, name: str, *, lock: bool = False) -> Model | None:
    query = sa.select(Model).where(Model.app_id == app_id, Model.name == name)
    return s.scalars(query.with_for_update() if lock else query).first()


def _model_row(s: Session, app_id: str, name: str, *, lock: bool = False) -> Model:
    model = _find_model(s, app_id, name, lock=lock)
    if model is None:
        raise model_not_found(name)
    return model


def model_not_found(name: str) -> NotFound:
    """The NotFound of a model name missing in the app (one message for every lookup)."""
    return NotFound(f"no model named {name!r} in this app; create it first or check the name.")


def _find_version(s: Session, model_id: str, version: int) -> ModelVersion | None:
    return s.scalars(
        sa.select(ModelVersion)
        .where(ModelVersion.model_id == model_id, ModelVersion.version == version)
        .options(selectinload(ModelVersion.variants))
    ).first()


def _identical_version(s: Session, model_id: str, sha256s: frozenset[str]) -> int | None:
    """The lowest version of the model whose set of variant sha256s equals ``sha256s``.

    Only versions sharing one of the files are read (a push rarely shares any).
    """
    sharing = (
        sa.select(Variant.version_id)
        .join(ModelVersion, ModelVersion.id == Variant.version_id)
        .where(ModelVersion.model_id == model_id, Variant.sha256.in_(sorted(sha256s)))
    )
    files: dict[int, set[str]] = {}
    for version, sha256 in s.execute(
        sa.select(ModelVersion.version, Variant.sha256)
        .join(Variant, Variant.version_id == ModelVersion.id)
        .where(ModelVersion.id.in_(sharing))
    ):
        files.setdefault(version, set()).add(sha256)
    return min((v for v, found in files.items() if found == sha256s), default=None)


def _version_row(s: Session, model: Model, version: int) -> ModelVersion:
    row = _find_version(s, model.id, version)
    if row is None:
        raise NotFound(f"model {model.name!r} has no version {version}.")
    return row


def _version_taken(model: str, version: int) -> VersionTaken:
    return VersionTaken(
        f"{model} v{version} exists already and versions are immutable; push without a "
        "version number to get the next one, or pick an unused number."
    )


def _check_no_rollout_needs(s: Session, model: Model, row: ModelVersion, stage: str | None) -> None:
    """Refuse a stage change (``stage``) or deletion (None) an active move depends on.

    While a rollout is active its rollback must restore the production version and its
    completion must promote the candidate, so neither may be changed by hand meanwhile;
    a running experiment's arms must keep existing. Runs under the model row lock, the
    lock every rollout and experiment transition also takes first.
    """
    active = s.execute(
        sa.select(_ROLLOUTS.c.id, _ROLLOUTS.c.candidate_version).where(
            _ROLLOUTS.c.model_id == model.id, _ROLLOUTS.c.state.in_(("running", "paused"))
        )
    ).first()
    touches = stage == "production" or row.stage == "production" or stage is None
    if active is not None and (touches or row.version == active.candidate_version):
        raise Conflict(
            f"{model.name} v{row.version} cannot be {'deleted' if stage is None else 'moved'}"
            f" while rollout {active.id} (candidate v{active.candidate_version}) is active: "
            f"complete it to promote its candidate, or roll it back first "
            f"(pocketml rollout complete|rollback {active.id})."
        )
    if stage is None:
        for experiment_id, arms in s.execute(
            sa.select(_EXPERIMENTS.c.id, _EXPERIMENTS.c.arms).where(
                _EXPERIMENTS.c.model_id == model.id, _EXPERIMENTS.c.state == "running"
            )
        ):
            arms = json.loads(arms) if isinstance(arms, str) else arms
            if any(int(arm["version"]) == row.version for arm in arms or []):
                raise Conflict(
                    f"{model.name} v{row.version} is an arm of running experiment "
                    f"{experiment_id}; stop it first (pocketml experiment stop {experiment_id})."
                )


def _latest_version() -> sa.ScalarSelect[Any]:
    return (
        sa.select(sa.func.max(ModelVersion.version))
        .where(ModelVersion.model_id == Model.id)
        .correlate(Model)
        .scalar_subquery()
    )


def _production_version() -> sa.ScalarSelect[Any]:
    return (
        sa.select(ModelVersion.version)
        .where(ModelVersion.model_id == Model.id, ModelVersion.stage == "production")
        .correlate(Model)
        .limit(1)
        .scalar_subquery()
    )
