"""Registry: the service behind the admin API — apps, credentials, keys, models, versions.

It owns the business rules (token hashing, key wrapping, building signed packages, the
single-production rule, version numbering) and delegates rows to ``RegistryStore`` and
bytes to an ``ArtifactStore``. Every method takes the caller's ``app_id`` and looks
objects up inside that app only, so one app can never see or change another's objects.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pocketml.db import utcnow
from pocketml.errors import Conflict, IntegrityError, InvalidInput, Unauthorized, Unavailable
from pocketml.registry._devicekeys import (
    DEFAULT_OVERLAP_DAYS,
    MAX_OVERLAP_DAYS,
    DeviceKeyRotation,
    DeviceKeyState,
)
from pocketml.registry._keyrings import SigningKeys, keyring_of
from pocketml.registry._push import (
    build_packages,
    check_files,
    check_model_files,
    new_version,
    store_model_files,
)
from pocketml.registry._rows import KeyRecord
from pocketml.registry._types import (
    STAGES,
    AppCreated,
    AppInfo,
    ModelCreate,
    ModelInfo,
    Page,
    Principal,
    StoredPackage,
    VersionCreate,
    VersionInfo,
)
from pocketml.registry.artifacts import ArtifactStore
from pocketml.registry.store import DuplicateBuild, RegistryStore, StageHook, VersionTaken, new_id

if TYPE_CHECKING:
    from pocketml.protect import ContentKey, MasterKey, SigningKey

__all__ = ["ADMIN_TOKEN_PREFIX", "DEVICE_KEY_PREFIX", "Registry"]

logger = logging.getLogger(__name__)

ADMIN_TOKEN_PREFIX = "pml_adm_"
DEVICE_KEY_PREFIX = "pml_dev_"
_MAX_NUMBERING_ATTEMPTS = 8


def hash_token(token: str) -> str:
    """The sha256 hex of a token: what the database stores instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Validate a ModelSchema dict; return its normalised JSON form (SchemaError if bad)."""
    from pocketml.schema import ModelSchema

    return ModelSchema.from_dict(schema).to_dict()


class Registry(SigningKeys):
    """The registry service. Construct with configuration, then ``open()`` it.

    Signing keys (keyring, rotation, revocation) are the ``SigningKeys`` part, in
    ``_keyrings.py``.

    Args:
        database_url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql+psycopg://...``).
        artifacts: where model files and packages are stored.
        master_key: wraps the apps' signing and content keys at rest.
        tmp_dir: where packages are built before they are stored; default: system temp.
    """

    def __init__(
        self,
        database_url: str,
        artifacts: ArtifactStore,
        master_key: MasterKey,
        *,
        tmp_dir: Path | None = None,
    ) -> None:
        self.database_url = database_url
        self.artifacts = artifacts
        self.master_key = master_key
        self.tmp_dir = tmp_dir
        self._store: RegistryStore | None = None

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Connect, migrate the database to the newest schema, and get ready to serve.

        Raises:
            Unavailable: the database cannot be reached or migrated.
        """
        if self._store is None:
            store = RegistryStore(self.database_url)
            store.open()
            self._store = store

    def close(self) -> None:
        """Release the database connections. The registry can be opened again."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Registry:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def store(self) -> RegistryStore:
        """The open store. Raises Unavailable when ``open()`` was not called."""
        if self._store is None:
            raise Unavailable("the registry is not open; call Registry.open() first.")
        return self._store

    # -- apps and credentials ----------------------------------------------------------

    def create_app(self, name: str) -> AppCreated:
        """Create an app with fresh credentials and an Ed25519 signing key.

        Args:
            name: unique app name (1-100 characters).

        Returns:
            The app and its admin token and device key (shown once; stored hashed).

        Raises:
            InvalidInput: empty or too long name.
            Conflict: an app with this name exists.
        """
        from pocketml.protect import SigningKey

        clean = name.strip() if isinstance(name, str) else ""
        if not 1 <= len(clean) <= 100:
            raise InvalidInput(f"app name must be 1-100 characters; got {name!r}.")
        admin_token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        device_key = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
        app_id = new_id("app")
        signing = SigningKey.generate()
        record = self._signing_record(app_id, signing)
        keyring = keyring_of(app_id, 1, [(signing.key_id, signing.public_bytes(), "active")])
        info = self.store.create_app(
            app_id,
            clean,
            hash_token(admin_token),
            hash_token(device_key),
            record,
            keyring.signed_by(signing).to_json().decode("ascii"),
        )
        logger.info("created app %s (%s)", info.id, info.name)
        return AppCreated(app=info, admin_token=admin_token, device_key=device_key)

    def list_apps(self) -> list[AppInfo]:
        """Every app, oldest first (an operator-only view)."""
        return self.store.list_apps()

    def authenticate(self, token: str) -> Principal:
        """Find who an admin token or device key belongs to.

        Args:
            token: a ``pml_adm_...`` admin token or ``pml_dev_...`` device key.

        Returns:
            The principal (app id and role ``admin`` or ``device``).

        Raises:
            Unauthorized: the token matches no app.
        """
        if not isinstance(token, str) or not token.startswith(
            (ADMIN_TOKEN_PREFIX, DEVICE_KEY_PREFIX)
        ):
            raise Unauthorized(
                "expected an admin token (pml_adm_...) or a device key (pml_dev_...); "
                "got an unknown credential. Check the token you configured."
            )
        role: Literal["admin", "device"] = (
            "admin" if token.startswith(ADMIN_TOKEN_PREFIX) else "device"
        )
        digest = hash_token(token)
        found = self.store.find_credential(role, digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            raise Unauthorized(
                f"this {'admin token' if role == 'admin' else 'device key'} matches no app; "
                "it may have been rotated. Ask the app's admin for the current one."
            )
        return Principal(app_id=found[0], role=role)

    def get_app(self, app_id: str) -> AppInfo:
        """The app with its active signing key id, trusted public keys and keyring.

        An app created before keyrings existed gets its first keyring here. Raises NotFound.
        """
        info = self.store.get_app(app_id)
        if info.keyring is None:
            self.get_keyring(app_id)
            info = self.store.get_app(app_id)
        return info

    def rotate_credential(self, app_id: str, which: Literal["admin", "device"]) -> str:
        """Replace the app's admin token or device key; the old one stops working at once.

        For a device key this is ``rotate_device_key(app_id, overlap_days=0)``: prefer
        that method with an overlap, so installed app builds keep working.

        Returns:
            The new token (shown once).

        Raises:
            InvalidInput: ``which`` is not "admin" or "device".
            NotFound: no such app.
        """
        if which not in ("admin", "device"):
            raise InvalidInput(f"credential to rotate must be 'admin' or 'device'; got {which!r}.")
        if which == "device":
            return self.rotate_device_key(app_id, overlap_days=0).device_key
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.store.set_admin_token(app_id, hash_token(token))
        logger.info("rotated the admin credential of app %s", app_id)
        return token

    def rotate_device_key(
        self,
        app_id: str,
        *,
        overlap_days: float = DEFAULT_OVERLAP_DAYS,
        actor: str = "admin",
        reason: str = "",
    ) -> DeviceKeyRotation:
        """Issue a new device key; the previous ones keep working for ``overlap_days``.

        Ship the new key in the next app build; builds already installed keep using the
        old key until the overlap ends (then they get 401 and must update). One
        transaction, audited. Device routes may accept a revoked key for up to
        ``auth_ttl_s`` more seconds (their principal cache).

        Args:
            app_id: the app.
            overlap_days: days the previous key keeps working, in [0, 365]; 0 revokes it
                now (an old key that leaked).
            actor: who rotates (audit log).
            reason: why (audit log).

        Returns:
            The new key (shown once) and the state of every device key of the app.

        Raises:
            InvalidInput: overlap_days outside [0, 365].
            NotFound: no such app.
        """
        if (
            isinstance(overlap_days, bool)
            or not isinstance(overlap_days, int | float)
            or not 0 <= overlap_days <= MAX_OVERLAP_DAYS
        ):
            raise InvalidInput(
                f"overlap_days must be a number of days in [0, {MAX_OVERLAP_DAYS:g}]; got "
                f"{overlap_days!r}. Pass 0 to revoke the old key now, or e.g. 30."
            )
        token = DEVICE_KEY_PREFIX + secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(days=overlap_days) if overlap_days > 0 else None
        keys = self.store.rotate_device_key(
            app_id, hash_token(token), expires_at, actor=actor, reason=reason
        )
        logger.info(
            "rotated the device key of app %s (previous keys end in %g days)",
            app_id,
            overlap_days,
        )
        return DeviceKeyRotation(device_key=token, keys=tuple(keys))

    def list_device_keys(self, app_id: str) -> list[DeviceKeyState]:
        """Every device key of the app (ids and states, never the keys), newest first.

        Raises:
            NotFound: no such app.
        """
        return self.store.device_keys(app_id)

    def revoke_device_key(
        self, app_id: str, key_id: str, *, actor: str = "admin", reason: str = ""
    ) -> DeviceKeyState:
        """End a previous device key's overlap now. Audited.

        Raises:
            NotFound: no such key in this app.
            Conflict: the active key (rotate instead) or a key revoked already.
        """
        state = self.store.revoke_device_key(app_id, key_id, actor=actor, reason=reason)
        logger.info("revoked device key %s of app %s", key_id, app_id)
        return state

    # -- models ------------------------------------------------------------------------

    def create_model(self, app_id: str, model: ModelCreate) -> ModelInfo:
        """Create a model in the app.

        Raises:
            SchemaError: the schema is not a valid ModelSchema (the message names the field).
            Conflict: the app has a model with this name.
            NotFound: no such app.
        """
        schema = _check_schema(model.schema)
        return self.store.create_model(app_id, model.name, model.description, schema)

    def validate_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Validate a ModelSchema dict exactly as ``create_model`` does; its normalised form.

        Raises:
            SchemaError: the schema is not a valid ModelSchema (the message names the field).
        """
        return _check_schema(schema)

    def list_models(
        self, app_id: str, *, limit: int = 50, offset: int = 0, prefix: str | None = None
    ) -> Page[ModelInfo]:
        """The app's models sorted by name, optionally only names starting with ``prefix``.

        Raises:
            InvalidInput: limit outside 1..1000 or negative offset.
        """
        _check_window(limit, offset)
        return self.store.list_models(app_id, limit=limit, offset=offset, prefix=prefix)

    def get_model(self, app_id: str, name: str) -> ModelInfo:
        """The app's model with this name. Raises NotFound."""
        return self.store.get_model(app_id, name)

    # -- versions ----------------------------------------------------------------------

    def push_version(
        self,
        app_id: str,
        model: str,
        meta: VersionCreate,
        files: Mapping[str, Path],
    ) -> VersionInfo:
        """Store a new version: its model files, one signed package per variant, its rows.

        All or nothing: the rows are written in one transaction after every file and
        package is stored, so a failure leaves no version behind (orphan content-addressed
        blobs are harmless).

        Args:
            app_id: the caller's app.
            model: the model's name.
            meta: lineage, card and variants; ``meta.version`` None = latest + 1.
            files: variant name -> local path of its model file.

        Returns:
            The stored version, stage "candidate".

        Raises:
            NotFound: no such model in the app.
            InvalidInput: a variant without a file or a file without a variant.
            ModelFileRejected: a file is not a model of its variant's format.
            IntegrityError: a file's sha256 differs from the declared one.
            Conflict: ``meta.version`` exists already.
            DuplicateBuild: a version with exactly the same model files exists (a double
                push) and ``meta.force`` is not set; checked again inside the insert's
                transaction, so of two identical pushes at once exactly one is stored.
        """
        check_files(meta, files)
        check_model_files(meta, files)
        info = self.store.get_model(app_id, model)
        if meta.version is not None:
            self.store.check_version_free(app_id, model, meta.version)
        signing = self._active_signing_key(app_id)
        model_refs = store_model_files(self.artifacts, meta, files)  # hashes every file
        if not meta.force:  # fail before packages are signed (a declared sha256 is optional)
            sha256s = frozenset(ref.sha256 for ref in model_refs.values())
            same = self.store.find_identical_version(app_id, model, sha256s)
            if same is not None:
                raise DuplicateBuild(model, same)
        content_keys: dict[str, ContentKey] = {}
        if any(variant.encrypt for variant in meta.variants):
            from pocketml.protect import ContentKey

            content_keys = {v.name: ContentKey.generate() for v in meta.variants if v.encrypt}
        number = meta.version or self.store.next_version_number(app_id, model)
        for _ in range(_MAX_NUMBERING_ATTEMPTS):
            packages = build_packages(
                self.artifacts,
                self.tmp_dir,
                app_id,
                info,
                number,
                meta,
                files,
                signing,
                content_keys,
            )
            new = new_version(meta, number, model_refs, packages, signing.key_id, content_keys)
            keys = [self._content_record(app_id, key) for key in content_keys.values()]
            try:
                version = self.store.insert_version(app_id, model, new, keys, force=meta.force)
            except VersionTaken as exc:
                if meta.version is not None:
                    raise Conflict(str(exc)) from exc
                logger.info("%s v%d was taken by a concurrent push; renumbering", model, number)
                number = self.store.next_version_number(app_id, model)
                continue
            logger.info("pushed %s v%d of app %s", model, number, app_id)
            return version
        raise Conflict(
            f"could not assign a version number to {model} after "
            f"{_MAX_NUMBERING_ATTEMPTS} attempts (many concurrent pushes); push again."
        )

    def list_versions(
        self,
        app_id: str,
        model: str,
        *,
        stage: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[VersionInfo]:
        """The model's versions, newest first, optionally only those in ``stage``.

        Raises:
            NotFound: no such model. InvalidInput: unknown stage or bad window.
        """
        _check_window(limit, offset)
        if stage is not None:
            _check_stage(stage)
        return self.store.list_versions(app_id, model, stage=stage, limit=limit, offset=offset)

    def get_version(self, app_id: str, model: str, version: int) -> VersionInfo:
        """One version with its variants. Raises NotFound."""
        return self.store.get_version(app_id, model, version)

    def get_reference_profile(self, app_id: str, model: str, version: int) -> dict[str, Any] | None:
        """The version's reference profile JSON (what its packages ship as ``profile.json``).

        Returns:
            The profile, or None for a version pushed without one.

        Raises:
            NotFound: no such model or version.
        """
        return self.store.get_reference_profile(app_id, model, version)

    def set_stage(
        self,
        app_id: str,
        model: str,
        version: int,
        stage: str,
        on_change: StageHook | None = None,
    ) -> VersionInfo:
        """Move a version to candidate, production or archived.

        At most one version per model is in production: promoting one archives the
        previous production version in the same transaction. ``on_change(connection,
        model_id, old_stage)`` runs in that transaction when the stage changes (an operator's
        change goes through ``ModelAdmin.set_stage``, which audits it there).

        Raises:
            NotFound: no such version. InvalidInput: unknown stage.
            Conflict: a rollout of the model is active and the change touches production or
                its candidate (complete or roll the rollout back first).
        """
        _check_stage(stage)
        return self.store.set_stage(app_id, model, version, stage, on_change)

    def delete_version(self, app_id: str, model: str, version: int) -> None:
        """Delete a version and its variants' rows (their blobs may be shared and stay).

        Raises:
            NotFound: no such version.
            Conflict: the version is in production (archive it instead), the candidate of
                an active rollout, or an arm of a running experiment.
        """
        self.store.delete_version(app_id, model, version)

    # -- packages and keys -------------------------------------------------------------

    def get_package(self, app_id: str, package_id: str) -> StoredPackage:
        """Where the app's package with this id (its sha256) is stored.

        Raises:
            NotFound: no such package in this app (other apps' packages included).
        """
        return self.store.get_package(app_id, package_id)

    def find_public_package(self, package_id: str) -> StoredPackage:
        """A package fetched without a key: found only in an app whose packages are public.

        Raises:
            NotFound: no public package has this id (a private app's package included).
        """
        return self.store.find_public_package(package_id)

    def packages_public(self, app_id: str) -> bool:
        """Whether the app's packages may be fetched without a key and cached by a CDN.

        Raises:
            NotFound: no such app.
        """
        return self.store.packages_public(app_id)

    def set_packages_public(
        self, app_id: str, public: bool, *, actor: str = "admin", reason: str = ""
    ) -> bool:
        """Make the app's packages public (CDN-cacheable) or private (device key only).

        Making them private does not purge copies a shared cache already holds (they were
        announced ``max-age`` one year): purge the CDN too. Audited.

        Returns:
            The new setting.

        Raises:
            InvalidInput: ``public`` is not a bool. NotFound: no such app.
        """
        if not isinstance(public, bool):
            raise InvalidInput(f"public must be true or false; got {public!r}.")
        self.store.set_packages_public(app_id, public, actor=actor, reason=reason)
        logger.info("packages of app %s are now %s", app_id, "public" if public else "private")
        return public

    def get_content_key(self, app_id: str, key_id: str) -> bytes:
        """The raw 32-byte AES key of one of the app's encrypted packages.

        Raises:
            NotFound: no such content key in this app.
            Unavailable: the stored key does not unwrap with this server's master key.
        """
        return self._unwrap(self.store.get_key(app_id, key_id, kind="content"))

    # -- helpers -----------------------------------------------------------------------

    def _signing_record(self, app_id: str, key: SigningKey) -> KeyRecord:
        return KeyRecord(
            key_id=key.key_id,
            app_id=app_id,
            kind="signing",
            wrapped_secret=self.master_key.wrap(key.private_bytes(), key.key_id),
            public_key=key.public_bytes(),
        )

    def _content_record(self, app_id: str, key: ContentKey) -> KeyRecord:
        return KeyRecord(
            key_id=key.key_id,
            app_id=app_id,
            kind="content",
            wrapped_secret=self.master_key.wrap(key.secret, key.key_id),
            public_key=None,
        )

    def _unwrap(self, record: KeyRecord) -> bytes:
        try:
            return self.master_key.unwrap(record.wrapped_secret, record.key_id)
        except IntegrityError as exc:
            # A server misconfiguration, not a client error: say which setting to fix.
            raise Unavailable(
                f"the master key cannot unwrap key {record.key_id}: this server runs with a "
                "different master key than the one that stored it. Give every replica the "
                "same POCKETML_MASTER_KEY (or <home>/master.key) and restart."
            ) from exc


def _check_window(limit: int, offset: int) -> None:
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput(
            f"limit must be in [1, 1000] and offset >= 0; got limit={limit}, offset={offset}."
        )


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise InvalidInput(f"stage must be one of {list(STAGES)}; got {stage!r}.")
