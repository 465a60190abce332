"""The registry's key rules: which keyring comes next, and re-signing a revoked key's packages.

``SigningKeys`` is the part of ``Registry`` that owns signing keys; it keeps rows in the
store and never decides HTTP details (the server does). The rule itself is documented
once, in docs/packages.md ("Signing keys: rotation and revocation").
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pocketml.errors import Conflict, NotFound, Unavailable
from pocketml.registry._keystore import KeyChange, ResignTarget, SigningKeyState
from pocketml.registry._push import _named_model_file
from pocketml.registry._rows import KeyRecord
from pocketml.registry._types import AppInfo, KeyringChange
from pocketml.registry.artifacts import ArtifactRef, ArtifactStore

if TYPE_CHECKING:
    from pocketml.protect import ContentKey, Keyring, MasterKey, SigningKey
    from pocketml.registry.store import RegistryStore

__all__ = ["KeyEntry", "SigningKeys", "entries_of", "keyring_of", "resign_package"]

logger = logging.getLogger(__name__)

KeyEntry = tuple[str, bytes, str]  # (key id, raw public key, "active" | "retired" | "revoked")


def entries_of(states: Sequence[SigningKeyState]) -> list[KeyEntry]:
    """The (id, public key, status) triples of the app's stored signing keys."""
    return [(s.record.key_id, s.record.public_key or b"", s.status) for s in states]


def keyring_of(app_id: str, sequence: int, entries: Sequence[KeyEntry]) -> Keyring:
    """The unsigned keyring ``sequence`` of an app whose signing keys are ``entries``.

    Args:
        app_id: the app.
        sequence: the keyring's sequence (the current one + 1; 1 for the first).
        entries: every signing key with its status; exactly one should be active (the
            newest active one wins, as for signing).

    Returns:
        A Keyring: active + retired keys in ``keys``, revoked ids in ``revoked``.
    """
    from pocketml.protect import Keyring

    active = [key_id for key_id, _, status in entries if status == "active"]
    return Keyring(
        app_id=app_id,
        sequence=sequence,
        issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        active=active[-1] if active else "",
        keys={key_id: public for key_id, public, status in entries if status != "revoked"},
        revoked=tuple(key_id for key_id, _, status in entries if status == "revoked"),
    )


def resign_package(
    artifacts: ArtifactStore,
    tmp_dir: Path | None,
    app_id: str,
    target: ResignTarget,
    signing: SigningKey,
    content_key: ContentKey | None,
) -> ArtifactRef:
    """Rebuild one variant's package from its stored model file, signed by ``signing``.

    The model file, schema, card, profile, version and content key are those of the variant, so
    the new package differs from the old one only in its signature (and therefore in its
    id): devices download it as an update of the same version.

    Returns:
        The stored package (its sha256 is the new package id).
    """
    from pocketml.protect import build_package

    with tempfile.TemporaryDirectory(prefix="pocketml-resign-", dir=tmp_dir) as tmp:
        source = Path(tmp) / f"{target.variant}.part"
        with artifacts.open_read(target.model_key) as src, source.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        package = build_package(
            _named_model_file(source, target.format, Path(tmp)),
            Path(tmp) / f"{target.variant}.pmlpkg",
            app_id=app_id,
            model=target.model,
            version=target.version,
            variant=target.variant,
            model_format=target.format,
            precision=target.precision,
            schema=target.schema,
            card=target.card,
            signing_key=signing,
            content_key=content_key,
            profile=target.profile,
        )
        return artifacts.put_file(package.path, expected_sha256=package.sha256)


class SigningKeys:
    """Mixin of ``Registry``: the app's keyring, rotation and revocation."""

    artifacts: ArtifactStore
    master_key: MasterKey
    tmp_dir: Path | None

    @property
    def store(self) -> RegistryStore:
        raise NotImplementedError  # provided by Registry

    def _unwrap(self, record: KeyRecord) -> bytes:
        raise NotImplementedError  # provided by Registry

    def get_keyring(self, app_id: str) -> dict[str, Any]:
        """The app's newest signed keyring (JSON form); issues keyring 1 when it has none.

        Raises:
            NotFound: no such app.
        """
        body = self.store.current_keyring(app_id)
        if body is None:
            states = self.store.signing_keys(app_id)
            first = keyring_of(app_id, 1, entries_of(states))
            signed = first.signed_by(self._active_signing_key(app_id))
            self.store.insert_first_keyring(app_id, signed.to_json().decode("ascii"))
            body = self.store.current_keyring(app_id)
        return dict(json.loads(body or "{}"))

    def rotate_signing_key(
        self,
        app_id: str,
        *,
        actor: str = "admin",
        reason: str = "",
        lost_master_key: bool = False,
    ) -> AppInfo:
        """Make a new signing key active; the previous one stays as a verify-only key.

        The new keyring is signed by every key it keeps: the new one, the previous active
        one and the other retired ones, so a device that trusts any of them follows.

        Args:
            app_id: the app.
            actor: who asked (audit log).
            reason: why (audit log).
            lost_master_key: the master key that wrapped the old keys is gone: sign the
                keyring with the keys that still unwrap (at least the new one). Devices
                cannot follow such a keyring; they need an app update that ships it.

        Returns:
            The app with its new active key, trusted keys and keyring.

        Raises:
            NotFound: no such app. Conflict: a concurrent key change; run it again.
            Unavailable: the previous key does not unwrap (without ``lost_master_key``).
        """
        from pocketml.protect import Keyring, SigningKey

        current = Keyring.from_dict(self.get_keyring(app_id))
        new = SigningKey.generate()
        entries = [
            (key_id, public, "retired" if status == "active" else status)
            for key_id, public, status in entries_of(self.store.signing_keys(app_id))
        ]
        entries.append((new.key_id, new.public_bytes(), "active"))
        required = None if lost_master_key else current.active
        ring = keyring_of(app_id, current.sequence + 1, entries).signed_by(
            *self._kept_signing_keys(app_id, drop=None, required=required), new
        )
        record = KeyRecord(
            key_id=new.key_id,
            app_id=app_id,
            kind="signing",
            wrapped_secret=self.master_key.wrap(new.private_bytes(), new.key_id),
            public_key=new.public_bytes(),
        )
        details = {"previous": current.active, "lost_master_key": lost_master_key}
        self.store.rotate_signing_key(app_id, record, _change(ring, actor, reason, details))
        logger.info("rotated the signing key of app %s to %s", app_id, new.key_id)
        return self.store.get_app(app_id)

    def revoke_signing_key(
        self, app_id: str, key_id: str, *, actor: str = "admin", reason: str = ""
    ) -> KeyringChange:
        """Revoke a retired signing key: re-sign its packages, then drop it from the keyring.

        Every variant whose package the key signed gets a new package (same model file,
        signed by the active key) before the key leaves the keyring, so no announced
        package ever depends on a revoked key. The new keyring is signed by every key it
        keeps (the active one and the other retired ones), never by the revoked one.

        Raises:
            NotFound: no such signing key. Conflict: it is the active key (rotate first),
            revoked already, or a concurrent key change.
        """
        from pocketml.protect import Keyring

        current = Keyring.from_dict(self.get_keyring(app_id))
        entries = entries_of(self.store.signing_keys(app_id))
        status = next((st for kid, _, st in entries if kid == key_id), None)
        if status is None:
            raise NotFound(
                f"no signing key {key_id!r} in this app; its keys are "
                f"{[kid for kid, _, _ in entries]} (pocketml app keys show)."
            )
        if status == "active":
            raise Conflict(
                f"{key_id} is the active signing key and cannot be revoked; rotate first "
                "(pocketml app keys rotate), then revoke it."
            )
        if status == "revoked":
            raise Conflict(f"signing key {key_id} is revoked already.")
        active = self._active_signing_key(app_id)
        resigned = tuple(
            self._resign(app_id, target, active)
            for target in self.store.variants_signed_by(app_id, key_id)
        )
        entries = [(kid, pub, "revoked" if kid == key_id else st) for kid, pub, st in entries]
        ring = keyring_of(app_id, current.sequence + 1, entries).signed_by(
            *self._kept_signing_keys(app_id, drop=key_id, required=active.key_id)
        )
        details = {"resigned": [list(item) for item in resigned]}
        self.store.revoke_signing_key(app_id, key_id, _change(ring, actor, reason, details))
        logger.warning(
            "revoked signing key %s of app %s (%d packages re-signed)",
            key_id,
            app_id,
            len(resigned),
        )
        return KeyringChange(keyring=ring.to_dict(), resigned=resigned)

    def _resign(
        self, app_id: str, target: ResignTarget, signing: SigningKey
    ) -> tuple[str, int, str, str, str]:
        content_key = None
        if target.content_key_id is not None:
            from pocketml.protect import ContentKey

            record = self.store.get_key(app_id, target.content_key_id, kind="content")
            content_key = ContentKey(key_id=record.key_id, secret=self._unwrap(record))
        ref = resign_package(self.artifacts, self.tmp_dir, app_id, target, signing, content_key)
        package = (ref.sha256, ref.key, ref.size)
        if not self.store.replace_package(app_id, target, package, signing.key_id):
            raise Conflict(
                f"{target.model} v{target.version} {target.variant} changed while its package "
                "was being re-signed; run the revocation again."
            )
        return (target.model, target.version, target.variant, target.package_id, ref.sha256)

    def _kept_signing_keys(
        self, app_id: str, *, drop: str | None, required: str | None
    ) -> list[SigningKey]:
        """The private keys of the keys a new keyring keeps (all but revoked and ``drop``).

        A key that does not unwrap is left out (logged), except ``required``.
        """
        from pocketml.protect import SigningKey

        keys = []
        for state in self.store.signing_keys(app_id):
            key_id = state.record.key_id
            if state.status == "revoked" or key_id == drop:
                continue
            try:
                keys.append(SigningKey.from_private_bytes(self._unwrap(state.record)))
            except Unavailable:
                if key_id == required:
                    raise
                logger.warning("signing key %s of app %s does not unwrap", key_id, app_id)
        return keys

    def _active_signing_key(self, app_id: str) -> SigningKey:
        from pocketml.protect import SigningKey

        active = [s for s in self.store.signing_keys(app_id) if s.status == "active"]
        if not active:
            raise NotFound(f"app {app_id} has no active signing key; rotate it to make one.")
        return SigningKey.from_private_bytes(self._unwrap(active[-1].record))


def _change(ring: Keyring, actor: str, reason: str, details: dict[str, Any]) -> KeyChange:
    return KeyChange(
        sequence=ring.sequence,
        body=ring.to_json().decode("ascii"),
        actor=actor,
        reason=reason,
        details=details,
    )
