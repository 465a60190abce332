"""Signing-key rotation and revocation in the registry, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pocketml.errors import Conflict, NotFound, Unavailable
from pocketml.protect import (
    Keyring,
    KeyringInvalid,
    MasterKey,
    UntrustedKey,
    accept_keyring,
    follow_keyrings,
    verify_package,
)
from pocketml.registry import Registry, VersionInfo

Push = Callable[..., VersionInfo]


def keyring(registry: Registry, app_id: str) -> Keyring:
    return Keyring.from_dict(registry.get_keyring(app_id))


def package_path(registry: Registry, app_id: str, package_id: str, tmp_path: Path) -> Path:
    ref = registry.get_package(app_id, package_id)
    path = tmp_path / f"{package_id}.pmlpkg"
    path.write_bytes(b"".join(registry.artifacts.iter_range(ref.key)))
    return path


def audit_rows(registry: Registry, app_id: str) -> list[tuple[str, str, str]]:
    with registry.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT subject, action, reason FROM rollout_audit WHERE app_id = :a ORDER BY id"
            ),
            {"a": app_id},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


class TestKeyring:
    def test_a_new_app_has_keyring_1_signed_by_its_only_key(
        self, registry: Registry, app_id: str
    ) -> None:
        ring = keyring(registry, app_id)
        app = registry.get_app(app_id)
        assert (ring.sequence, ring.active) == (1, app.signing_key_id)
        assert list(ring.keys) == [ring.active]
        assert ring.valid_signers() == {ring.active}
        assert app.keyring == ring.to_dict()

    def test_an_app_from_before_keyrings_gets_its_first_on_read(
        self, registry: Registry, app_id: str
    ) -> None:
        with registry.store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM app_keyrings WHERE app_id = :a"), {"a": app_id})
        assert registry.store.get_app(app_id).keyring is None

        app = registry.get_app(app_id)

        assert app.keyring is not None
        assert accept_keyring(None, app.keyring, app_id=app_id).sequence == 1


class TestRotation:
    def test_rotation_issues_a_keyring_signed_by_the_previous_and_the_new_key(
        self, registry: Registry, app_id: str
    ) -> None:
        before = keyring(registry, app_id)

        app = registry.rotate_signing_key(app_id)

        after = keyring(registry, app_id)
        assert after.sequence == 2
        assert after.active == app.signing_key_id != before.active
        assert set(after.keys) == {before.active, after.active}
        assert after.valid_signers() == {before.active, after.active}
        assert accept_keyring(before, after.to_dict(), app_id=app_id) == after
        assert app.keyring == after.to_dict()
        assert app.keyring_chain == (before.to_dict(),)

    def test_rotation_is_audited(self, registry: Registry, app_id: str) -> None:
        app = registry.rotate_signing_key(app_id, actor="admin:x", reason="yearly")
        assert audit_rows(registry, app_id) == [(app.signing_key_id, "key_rotated", "yearly")]


class TestRevocation:
    def test_the_active_key_cannot_be_revoked(self, registry: Registry, app_id: str) -> None:
        active = registry.get_app(app_id).signing_key_id
        with pytest.raises(Conflict, match="rotate first"):
            registry.revoke_signing_key(app_id, active)
        assert keyring(registry, app_id).sequence == 1

    def test_an_unknown_key_is_not_found(self, registry: Registry, app_id: str) -> None:
        with pytest.raises(NotFound, match="no signing key"):
            registry.revoke_signing_key(app_id, "ed25519:0000000000000000")

    def test_another_apps_key_is_not_found(
        self, registry: Registry, app_id: str, other_app_id: str
    ) -> None:
        foreign = registry.get_app(other_app_id).signing_key_id
        registry.rotate_signing_key(other_app_id)
        with pytest.raises(NotFound):
            registry.revoke_signing_key(app_id, foreign)

    def test_revocation_drops_the_key_and_signs_with_the_keys_kept(
        self, registry: Registry, app_id: str
    ) -> None:
        old = registry.get_app(app_id).signing_key_id
        registry.rotate_signing_key(app_id)
        rotated = keyring(registry, app_id)

        change = registry.revoke_signing_key(app_id, old, actor="admin:x", reason="leaked")

        after = Keyring.from_dict(change.keyring)
        assert (after.sequence, after.revoked, set(after.keys)) == (3, (old,), {rotated.active})
        assert after.valid_signers() == {rotated.active}
        assert old not in registry.get_app(app_id).public_keys
        assert accept_keyring(rotated, change.keyring, app_id=app_id) == after
        assert audit_rows(registry, app_id)[-1] == (old, "key_revoked", "leaked")

    def test_a_key_is_revoked_once(self, registry: Registry, app_id: str) -> None:
        old = registry.get_app(app_id).signing_key_id
        registry.rotate_signing_key(app_id)
        registry.revoke_signing_key(app_id, old)
        with pytest.raises(Conflict, match="revoked already"):
            registry.revoke_signing_key(app_id, old)

    def test_packages_of_the_revoked_key_are_re_signed_by_the_active_key(
        self, registry: Registry, app_id: str, push: Push, tmp_path: Path
    ) -> None:
        v1 = push(app_id, seed=1, variants=("plain", "secret"), encrypted=("secret",))
        old = registry.get_app(app_id).signing_key_id
        new = registry.rotate_signing_key(app_id).signing_key_id

        change = registry.revoke_signing_key(app_id, old)

        v1_now = registry.get_version(app_id, "digits", v1.version)
        trusted = Keyring.from_dict(change.keyring).trusted_keys()
        assert {r[2] for r in change.resigned} == {"plain", "secret"}
        for before, after in zip(v1.variants, v1_now.variants, strict=True):
            assert after.signing_key_id == new
            assert after.package_id != before.package_id
            assert after.sha256 == before.sha256  # the same model, a new signature
            path = package_path(registry, app_id, after.package_id, tmp_path)
            verified = verify_package(path, trusted_keys=trusted, app_id=app_id)
            assert verified.manifest["version"] == v1.version
            assert verified.manifest["variant"] == after.name
            with pytest.raises(NotFound):
                registry.get_package(app_id, before.package_id)
        secret = next(v for v in v1_now.variants if v.name == "secret")
        assert secret.content_key_id == next(
            v.content_key_id for v in v1.variants if v.name == "secret"
        )

    def test_an_old_package_of_the_revoked_key_no_longer_verifies(
        self, registry: Registry, app_id: str, push: Push, tmp_path: Path
    ) -> None:
        v1 = push(app_id, seed=1)
        old_path = package_path(registry, app_id, v1.variants[0].package_id, tmp_path)
        old = registry.get_app(app_id).signing_key_id
        registry.rotate_signing_key(app_id)

        change = registry.revoke_signing_key(app_id, old)

        trusted = Keyring.from_dict(change.keyring).trusted_keys()
        with pytest.raises(UntrustedKey):
            verify_package(old_path, trusted_keys=trusted, app_id=app_id)

    def test_packages_of_other_keys_are_left_alone(
        self, registry: Registry, app_id: str, push: Push
    ) -> None:
        old = registry.get_app(app_id).signing_key_id
        registry.rotate_signing_key(app_id)
        v2 = push(app_id, seed=2)
        registry.rotate_signing_key(app_id)

        change = registry.revoke_signing_key(app_id, old)

        assert change.resigned == ()
        assert registry.get_version(app_id, "digits", v2.version) == v2

    def test_a_device_pinned_before_both_changes_walks_the_published_chain(
        self, registry: Registry, app_id: str
    ) -> None:
        first = keyring(registry, app_id)
        registry.rotate_signing_key(app_id)
        registry.revoke_signing_key(app_id, first.active)

        app = registry.get_app(app_id)

        assert [ring["sequence"] for ring in app.keyring_chain] == [1, 2]
        newest = follow_keyrings(first, app.keyring, app.keyring_chain, app_id=app_id)
        assert newest.sequence == 3 and first.active in newest.revoked

    def test_a_keyring_computed_from_a_stale_sequence_conflicts(
        self, registry: Registry, app_id: str
    ) -> None:
        from pocketml.registry._keystore import KeyChange

        ring = keyring(registry, app_id)
        stale = KeyChange(
            sequence=1, body=ring.to_json().decode(), actor="t", reason="", details={}
        )
        with pytest.raises(Conflict, match="changed meanwhile"):
            registry.store.revoke_signing_key(app_id, ring.active, stale)


def test_public_keys_mirror_the_keyring(registry: Registry, app_id: str) -> None:
    old = registry.get_app(app_id).signing_key_id
    registry.rotate_signing_key(app_id)
    registry.revoke_signing_key(app_id, old)
    app = registry.get_app(app_id)
    ring = Keyring.from_dict(app.keyring)
    assert {k: base64.b64decode(v) for k, v in app.public_keys.items()} == ring.trusted_keys()


class TestLostMasterKey:
    @pytest.fixture
    def rekeyed(self, registry: Registry, app_id: str, tmp_path: Path) -> Iterator[Registry]:
        """The same database and artifacts, opened with a new master key."""
        other = Registry(
            registry.database_url,
            registry.artifacts,
            MasterKey(b"\x09" * 32),
            tmp_dir=tmp_path,
        )
        other.open()
        yield other
        other.close()

    def test_rotation_needs_the_previous_key(self, rekeyed: Registry, app_id: str) -> None:
        with pytest.raises(Unavailable, match="master key"):
            rekeyed.rotate_signing_key(app_id)

    def test_rotation_after_a_lost_master_key_signs_with_the_new_key_only(
        self, rekeyed: Registry, app_id: str, push: Push
    ) -> None:
        before = keyring(rekeyed, app_id)

        app = rekeyed.rotate_signing_key(app_id, lost_master_key=True)

        after = keyring(rekeyed, app_id)
        assert after.valid_signers() == {app.signing_key_id}
        with pytest.raises(KeyringInvalid, match="none of which"):
            accept_keyring(before, after.to_dict(), app_id=app_id)  # devices need an update
        assert accept_keyring(None, after.to_dict(), app_id=app_id) == after
