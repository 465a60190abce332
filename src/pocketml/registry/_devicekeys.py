"""The device-key half of ``RegistryStore``: several keys per app, rotation with an overlap.

A device key ships inside every installed build of a mobile app, so replacing it cannot
break the builds already on phones. An app therefore holds several device keys: exactly
one **active** key (new builds ship it), and older keys that keep working until their
``expires_at`` (**expiring**, then **expired**) or until they are **revoked**. Rotation is
one transaction that locks the app row, inserts the new key (and mirrors it on
``apps.device_key_sha256``), sets the end of the overlap on the previous keys and writes an
audit entry, so two concurrent rotations serialise.
Authentication compares times in Python (one clock, the server's), not in SQL.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from pocketml.db import utcnow
from pocketml.errors import Conflict, NotFound
from pocketml.registry._keystore import write_audit
from pocketml.registry._orm import App, AppDeviceKey
from pocketml.registry._rows import require_app

__all__ = [
    "DEFAULT_OVERLAP_DAYS",
    "MAX_OVERLAP_DAYS",
    "DeviceKeyRotation",
    "DeviceKeyState",
    "DeviceKeyStatus",
    "DeviceKeyStore",
    "device_key_id",
]

DeviceKeyStatus = Literal["active", "expiring", "expired", "revoked"]

DEFAULT_OVERLAP_DAYS = 30.0  # how long a rotated key keeps working unless the operator says
MAX_OVERLAP_DAYS = 365.0  # an old key may not outlive a year of app updates


def device_key_id(key_sha256: str) -> str:
    """The public id of a device key: ``dk_`` and the first 16 hex characters of its hash."""
    return "dk_" + key_sha256[:16]


@dataclass(frozen=True)
class DeviceKeyState:
    """One device key of an app (never the key itself) and where it stands now."""

    key_id: str
    status: DeviceKeyStatus
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class DeviceKeyRotation:
    """The result of a device-key rotation: the new key (shown once) and every key's state."""

    device_key: str
    keys: tuple[DeviceKeyState, ...]


def status_of(row: AppDeviceKey, now: datetime) -> DeviceKeyStatus:
    """Where a device key stands at ``now``."""
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is None:
        return "active"
    return "expiring" if row.expires_at > now else "expired"


def _state(row: AppDeviceKey, now: datetime) -> DeviceKeyState:
    return DeviceKeyState(
        key_id=row.key_id,
        status=status_of(row, now),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


class DeviceKeyStore:
    """Mixin of ``RegistryStore``; ``_session`` is the store's transaction helper."""

    def _session(self, action: str, *, write: bool = False) -> AbstractContextManager[Session]:
        raise NotImplementedError  # provided by RegistryStore

    def find_device_key(self, key_sha256: str) -> tuple[str, str] | None:
        """(app id, stored hash) of the usable device key with this hash, else None.

        A key is usable while it is active or inside its overlap (not expired, not revoked).
        """
        with self._session("check credentials") as s:
            row = s.scalars(
                sa.select(AppDeviceKey).where(AppDeviceKey.key_sha256 == key_sha256)
            ).first()
            if row is None or status_of(row, utcnow()) not in ("active", "expiring"):
                return None
            return row.app_id, row.key_sha256

    def device_keys(self, app_id: str) -> list[DeviceKeyState]:
        """Every device key of the app, newest first. Raises NotFound for no app."""
        with self._session("read device keys") as s:
            require_app(s, app_id)
            now = utcnow()
            return [_state(row, now) for row in _rows(s, app_id)]

    def rotate_device_key(
        self,
        app_id: str,
        key_sha256: str,
        expires_at: datetime | None,
        *,
        actor: str,
        reason: str,
    ) -> list[DeviceKeyState]:
        """Make ``key_sha256`` the active key; the previous keys stop at ``expires_at``.

        Args:
            app_id: the app.
            key_sha256: the hash of the new key.
            expires_at: end of the overlap of the previous active key (a key already
                expiring keeps the earlier of its own end and this one); None revokes
                every previous key now.
            actor: who rotates (audit).
            reason: why (audit).

        Returns:
            Every device key of the app after the rotation, newest first.

        Raises:
            NotFound: no such app.
        """
        with self._session("rotate device key", write=True) as s:
            app = s.scalars(sa.select(App).where(App.id == app_id).with_for_update()).first()
            if app is None:
                raise NotFound(f"no app with id {app_id!r}.")
            app.device_key_sha256 = key_sha256  # the mirror of the active key (migration 0006)
            now = utcnow()
            new_id = device_key_id(key_sha256)
            ended: list[str] = []
            for row in _rows(s, app_id):
                if status_of(row, now) not in ("active", "expiring"):
                    continue
                ended.append(row.key_id)
                if expires_at is None or expires_at <= now:
                    row.revoked_at = now
                    row.expires_at = row.expires_at or now
                elif row.expires_at is None or expires_at < row.expires_at:
                    row.expires_at = expires_at
            s.add(AppDeviceKey(key_id=new_id, app_id=app_id, key_sha256=key_sha256, created_at=now))
            details = {
                "previous": ended,
                "previous_expire_at": None if expires_at is None else expires_at.isoformat(),
            }
            write_audit(
                s,
                app_id,
                new_id,
                "device_key_rotated",
                None,
                "active",
                now,
                actor=actor,
                reason=reason,
                details=details,
            )
            s.flush()
            return [_state(row, now) for row in _rows(s, app_id)]

    def revoke_device_key(
        self, app_id: str, key_id: str, *, actor: str, reason: str
    ) -> DeviceKeyState:
        """Revoke one of the app's previous device keys now (ends its overlap early).

        Raises:
            NotFound: no such device key in this app.
            Conflict: it is the active key (rotate first) or revoked already.
        """
        with self._session("revoke device key", write=True) as s:
            require_app(s, app_id, lock=True)
            now = utcnow()
            row = s.scalars(
                sa.select(AppDeviceKey).where(
                    AppDeviceKey.app_id == app_id, AppDeviceKey.key_id == key_id
                )
            ).first()
            if row is None:
                raise NotFound(
                    f"no device key {key_id!r} in this app; list them with "
                    "pocketml app device-keys list."
                )
            before = status_of(row, now)
            if before == "active":
                raise Conflict(
                    f"{key_id} is the active device key and cannot be revoked; rotate first "
                    "(pocketml app device-keys rotate --overlap-days 0), which revokes it."
                )
            if before == "revoked":
                raise Conflict(f"device key {key_id} is revoked already.")
            row.revoked_at = now
            write_audit(
                s,
                app_id,
                key_id,
                "device_key_revoked",
                before,
                "revoked",
                now,
                actor=actor,
                reason=reason,
                details={},
            )
            s.flush()
            return _state(row, now)


def _rows(s: Session, app_id: str) -> list[AppDeviceKey]:
    return list(
        s.scalars(
            sa.select(AppDeviceKey)
            .where(AppDeviceKey.app_id == app_id)
            .order_by(AppDeviceKey.created_at.desc(), AppDeviceKey.key_id)
        ).all()
    )
