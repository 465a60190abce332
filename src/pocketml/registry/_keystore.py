"""The signing-key half of ``RegistryStore``: key states, keyrings, re-signed packages.

A separate mixin so the key rules read in one place. Every key change (rotation,
revocation) is one transaction that locks the app row, checks that the keyring it was
computed from is still the newest (``expected`` sequence), changes the key rows, inserts
the next signed keyring and writes an audit entry: a concurrent change loses with a
Conflict instead of publishing two keyrings with the same sequence.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pocketml.db import utcnow
from pocketml.errors import Conflict, NotFound
from pocketml.registry._orm import AppKey, AppKeyring, Model, ModelVersion, Variant
from pocketml.registry._rows import KeyRecord, key_record, key_row, require_app

__all__ = [
    "KeyChange",
    "ResignTarget",
    "SigningKeyState",
    "SigningKeyStore",
    "write_audit",
]

KeyStatus = Literal["active", "retired", "revoked"]

# The audit log is shared with rollouts (``GET /v1/admin/audit``); a light table clause
# writes to it without importing delivery (which sits beside registry, not below it).
_AUDIT = sa.table(
    "rollout_audit",
    sa.column("app_id"),
    sa.column("subject"),
    sa.column("action"),
    sa.column("from_state"),
    sa.column("to_state"),
    sa.column("actor"),
    sa.column("reason"),
    sa.column("details", sa.JSON),
    sa.column("at"),
)


@dataclass(frozen=True)
class SigningKeyState:
    """One signing key of an app and where it stands."""

    record: KeyRecord
    status: KeyStatus
    created_at: datetime


@dataclass(frozen=True)
class KeyChange:
    """The next keyring of a key change and its audit entry."""

    sequence: int
    body: str
    actor: str
    reason: str
    details: dict[str, Any]


@dataclass(frozen=True)
class ResignTarget:
    """A variant whose package must be rebuilt because its signing key is being revoked."""

    variant_id: str
    model: str
    version: int
    variant: str
    format: str
    precision: str
    model_key: str
    package_id: str
    content_key_id: str | None
    schema: dict[str, Any]
    card: str
    profile: dict[str, Any] | None = None


class SigningKeyStore:
    """Mixin of ``RegistryStore``; ``_session`` is the store's transaction helper."""

    def _session(self, action: str, *, write: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by RegistryStore

    def signing_keys(self, app_id: str) -> list[SigningKeyState]:
        """Every signing key of the app, oldest first. Raises NotFound for no app."""
        with self._session("read signing keys") as s:
            require_app(s, app_id)
            return [_state(row) for row in _signing_rows(s, app_id)]

    def current_keyring(self, app_id: str) -> str | None:
        """The canonical JSON of the app's newest keyring, or None before the first."""
        with self._session("read keyring") as s:
            return _newest_keyring(s, app_id)

    def insert_first_keyring(self, app_id: str, body: str) -> None:
        """Store keyring 1 of an app that has none (a concurrent insert wins quietly)."""
        try:
            with self._session("store keyring", write=True) as s:
                require_app(s, app_id, lock=True)
                if _newest_sequence(s, app_id) == 0:
                    s.add(AppKeyring(app_id=app_id, sequence=1, body=body, created_at=utcnow()))
        except Conflict:
            pass  # another replica stored keyring 1 first; readers take the newest

    def rotate_signing_key(self, app_id: str, key: KeyRecord, change: KeyChange) -> None:
        """Retire the active key, make ``key`` active and publish ``change``'s keyring."""
        with self._session("rotate signing key", write=True) as s:
            require_app(s, app_id, lock=True)
            _check_sequence(s, app_id, change.sequence)
            now = utcnow()
            s.execute(
                sa.update(AppKey)
                .where(
                    AppKey.app_id == app_id,
                    AppKey.kind == "signing",
                    AppKey.retired_at.is_(None),
                )
                .values(retired_at=now)
            )
            s.add(key_row(key, now))
            _publish(s, app_id, change, key.key_id, "key_rotated", None, "active", now)

    def revoke_signing_key(self, app_id: str, key_id: str, change: KeyChange) -> None:
        """Mark a retired key revoked and publish ``change``'s keyring.

        Raises:
            NotFound: no such signing key. Conflict: it is the active key, revoked
                already, a concurrent key change, or a package still signed by it.
        """
        with self._session("revoke signing key", write=True) as s:
            require_app(s, app_id, lock=True)
            _check_sequence(s, app_id, change.sequence)
            row = _signing_row(s, app_id, key_id)
            state = _state(row)
            if state.status == "active":
                raise Conflict(
                    f"{key_id} is the active signing key and cannot be revoked; rotate first "
                    "(pocketml app keys rotate), then revoke it."
                )
            if state.status == "revoked":
                raise Conflict(f"signing key {key_id} is revoked already.")
            if s.scalar(_signed_by(app_id, key_id).with_only_columns(Variant.id).limit(1)):
                raise Conflict(
                    f"packages signed by {key_id} appeared while it was being revoked; "
                    "revoke it again to re-sign them."
                )
            now = utcnow()
            row.revoked_at = now
            _publish(s, app_id, change, key_id, "key_revoked", "retired", "revoked", now)

    def variants_signed_by(self, app_id: str, key_id: str) -> list[ResignTarget]:
        """Every variant of the app whose package is signed by ``key_id``."""
        query = (
            _signed_by(app_id, key_id)
            .with_only_columns(
                Variant,
                ModelVersion.version,
                ModelVersion.card,
                ModelVersion.reference_profile,
                Model,
            )
            .join(ModelVersion, ModelVersion.id == Variant.version_id)
            .join(Model, Model.id == ModelVersion.model_id)
            .order_by(Variant.id)
        )
        with self._session("read variants by signing key") as s:
            return [_target(*row) for row in s.execute(query).all()]

    def replace_package(
        self, app_id: str, target: ResignTarget, package: tuple[str, str, int], key_id: str
    ) -> bool:
        """Point a variant at its re-signed package ``(id, key, size)`` signed by ``key_id``.

        Returns:
            False when the variant changed or vanished meanwhile (nothing written).
        """
        package_id, package_key, package_size = package
        with self._session("store re-signed package", write=True) as s:
            result = s.execute(
                sa.update(Variant)
                .where(
                    Variant.app_id == app_id,
                    Variant.id == target.variant_id,
                    Variant.package_id == target.package_id,
                )
                .values(
                    package_id=package_id,
                    package_key=package_key,
                    package_size=package_size,
                    signing_key_id=key_id,
                )
            )
            return bool(getattr(result, "rowcount", 0))


def _signing_rows(s: Session, app_id: str) -> list[AppKey]:
    return list(
        s.scalars(
            sa.select(AppKey)
            .where(AppKey.app_id == app_id, AppKey.kind == "signing")
            .order_by(AppKey.created_at, AppKey.key_id)
        ).all()
    )


def _signing_row(s: Session, app_id: str, key_id: str) -> AppKey:
    row = s.scalars(
        sa.select(AppKey).where(
            AppKey.app_id == app_id, AppKey.key_id == key_id, AppKey.kind == "signing"
        )
    ).first()
    if row is None:
        raise NotFound(
            f"no signing key {key_id!r} in this app; list the keys with pocketml app keys show."
        )
    return row


def _state(row: AppKey) -> SigningKeyState:
    status: KeyStatus = "active"
    if row.revoked_at is not None:
        status = "revoked"
    elif row.retired_at is not None:
        status = "retired"
    return SigningKeyState(record=key_record(row), status=status, created_at=row.created_at)


def _newest_sequence(s: Session, app_id: str) -> int:
    query = sa.select(sa.func.max(AppKeyring.sequence)).where(AppKeyring.app_id == app_id)
    return int(s.scalar(query) or 0)


def _newest_keyring(s: Session, app_id: str) -> str | None:
    return s.scalar(
        sa.select(AppKeyring.body)
        .where(AppKeyring.app_id == app_id)
        .order_by(AppKeyring.sequence.desc())
        .limit(1)
    )


def _check_sequence(s: Session, app_id: str, sequence: int) -> None:
    newest = _newest_sequence(s, app_id)
    if sequence != newest + 1:
        raise Conflict(
            f"the app's keyring changed meanwhile (now at sequence {newest}, this change "
            f"was computed for {sequence - 1}); run the key command again."
        )


def _publish(
    s: Session,
    app_id: str,
    change: KeyChange,
    subject: str,
    action: str,
    from_state: str | None,
    to_state: str,
    now: datetime,
) -> None:
    s.add(AppKeyring(app_id=app_id, sequence=change.sequence, body=change.body, created_at=now))
    write_audit(
        s,
        app_id,
        subject,
        action,
        from_state,
        to_state,
        now,
        actor=change.actor,
        reason=change.reason,
        details={"keyring_sequence": change.sequence, **change.details},
    )


def write_audit(
    s: Session,
    app_id: str,
    subject: str,
    action: str,
    from_state: str | None,
    to_state: str,
    now: datetime,
    *,
    actor: str,
    reason: str,
    details: dict[str, Any],
) -> None:
    """Append one entry to the app's audit log inside the caller's transaction."""
    s.execute(
        sa.insert(_AUDIT).values(
            app_id=app_id,
            subject=subject,
            action=action,
            from_state=from_state,
            to_state=to_state,
            actor=actor,
            reason=reason,
            details=details,
            at=now,
        )
    )


def _signed_by(app_id: str, key_id: str) -> sa.Select[Any]:
    return sa.select(Variant).where(Variant.app_id == app_id, Variant.signing_key_id == key_id)


def _target(
    variant: Variant, version: int, card: str, profile: dict[str, Any] | None, model: Model
) -> ResignTarget:
    return ResignTarget(
        variant_id=variant.id,
        model=model.name,
        version=int(version),
        variant=variant.name,
        format=variant.format,
        precision=variant.precision,
        model_key=variant.model_key,
        package_id=variant.package_id,
        content_key_id=variant.content_key_id,
        schema=dict(model.schema),
        card=card,
        profile=None if profile is None else dict(profile),
    )
