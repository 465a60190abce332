"""Device keys: rotation with an overlap, expiry, revocation, listing, audit, migration.

Run on SQLite and PostgreSQL (``database_url``). Expiry is tested by moving a key's
``expires_at`` into the past in the database, never by waiting.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pocketml.db import alembic_config, create_engine, run_migrations, utcnow
from pocketml.errors import Conflict, InvalidInput, NotFound, Unauthorized
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry
from pocketml.registry.service import hash_token


def created(registry: Registry, name: str = "keys-app") -> tuple[str, str]:
    app = registry.create_app(name)
    return app.app.id, app.device_key


def statuses(registry: Registry, app_id: str) -> list[str]:
    return [k.status for k in registry.list_device_keys(app_id)]


def expire(registry: Registry, key_id: str) -> None:
    with registry.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE app_device_keys SET expires_at = :t WHERE key_id = :k"),
            {"t": utcnow() - timedelta(seconds=1), "k": key_id},
        )


def audit_actions(registry: Registry, app_id: str) -> list[tuple[str, str, str]]:
    with registry.store.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT subject, action, reason FROM rollout_audit WHERE app_id = :a ORDER BY id"
            ),
            {"a": app_id},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


class TestRotationWithOverlap:
    def test_a_new_app_has_one_active_device_key(self, registry: Registry) -> None:
        app_id, key = created(registry)

        keys = registry.list_device_keys(app_id)

        assert [k.status for k in keys] == ["active"]
        assert keys[0].key_id == "dk_" + hash_token(key)[:16]
        assert registry.authenticate(key).app_id == app_id

    def test_the_old_key_keeps_working_during_the_overlap(self, registry: Registry) -> None:
        app_id, old = created(registry)
        before = utcnow()

        rotated = registry.rotate_device_key(app_id, overlap_days=30, reason="yearly")

        assert registry.authenticate(old).app_id == app_id
        assert registry.authenticate(rotated.device_key).app_id == app_id
        assert [k.status for k in rotated.keys] == ["active", "expiring"]
        expires = rotated.keys[1].expires_at
        assert expires is not None
        assert before + timedelta(days=30) <= expires <= utcnow() + timedelta(days=30)

    def test_the_old_key_is_refused_once_its_overlap_ended(self, registry: Registry) -> None:
        app_id, old = created(registry)
        rotated = registry.rotate_device_key(app_id, overlap_days=1)

        expire(registry, rotated.keys[1].key_id)

        with pytest.raises(Unauthorized, match="matches no app"):
            registry.authenticate(old)
        assert registry.authenticate(rotated.device_key).app_id == app_id
        assert statuses(registry, app_id) == ["active", "expired"]

    def test_overlap_zero_revokes_the_old_key_now(self, registry: Registry) -> None:
        app_id, old = created(registry)

        rotated = registry.rotate_device_key(app_id, overlap_days=0, reason="leaked")

        with pytest.raises(Unauthorized):
            registry.authenticate(old)
        assert [k.status for k in rotated.keys] == ["active", "revoked"]

    def test_rotate_credential_device_still_revokes_at_once(self, registry: Registry) -> None:
        app_id, old = created(registry)

        new = registry.rotate_credential(app_id, "device")

        with pytest.raises(Unauthorized):
            registry.authenticate(old)
        assert registry.authenticate(new).app_id == app_id

    def test_a_second_rotation_never_extends_an_earlier_overlap(self, registry: Registry) -> None:
        app_id, first = created(registry)
        registry.rotate_device_key(app_id, overlap_days=2)

        again = registry.rotate_device_key(app_id, overlap_days=30)

        ends = [k.expires_at for k in again.keys]
        assert [k.status for k in again.keys] == ["active", "expiring", "expiring"]
        assert ends[0] is None and ends[1] is not None and ends[2] is not None
        assert ends[2] < utcnow() + timedelta(days=3) < ends[1]
        assert registry.authenticate(first).app_id == app_id

    @pytest.mark.parametrize("days", [-1, 365.5, float("nan"), True, "30"])
    def test_an_overlap_outside_0_to_365_days_changes_nothing(
        self, registry: Registry, days: object
    ) -> None:
        app_id, old = created(registry)

        with pytest.raises(InvalidInput, match=r"overlap_days must be .* \[0, 365\]"):
            registry.rotate_device_key(app_id, overlap_days=days)  # type: ignore[arg-type]

        assert statuses(registry, app_id) == ["active"]
        assert registry.authenticate(old).app_id == app_id

    def test_rotation_and_revocation_are_audited(self, registry: Registry) -> None:
        app_id, _ = created(registry)
        rotated = registry.rotate_device_key(app_id, overlap_days=5, reason="yearly")
        old_id = rotated.keys[1].key_id

        registry.revoke_device_key(app_id, old_id, reason="leaked")

        assert audit_actions(registry, app_id) == [
            (rotated.keys[0].key_id, "device_key_rotated", "yearly"),
            (old_id, "device_key_revoked", "leaked"),
        ]


class TestRevocation:
    def test_revoking_a_previous_key_ends_its_overlap_now(self, registry: Registry) -> None:
        app_id, old = created(registry)
        rotated = registry.rotate_device_key(app_id, overlap_days=30)

        state = registry.revoke_device_key(app_id, rotated.keys[1].key_id)

        assert state.status == "revoked" and state.revoked_at is not None
        with pytest.raises(Unauthorized):
            registry.authenticate(old)
        assert registry.authenticate(rotated.device_key).app_id == app_id

    def test_the_active_key_cannot_be_revoked(self, registry: Registry) -> None:
        app_id, key = created(registry)
        active = registry.list_device_keys(app_id)[0].key_id

        with pytest.raises(Conflict, match="rotate first"):
            registry.revoke_device_key(app_id, active)
        assert registry.authenticate(key).app_id == app_id

    def test_a_key_revoked_already_is_a_conflict(self, registry: Registry) -> None:
        app_id, _ = created(registry)
        rotated = registry.rotate_device_key(app_id, overlap_days=0)

        with pytest.raises(Conflict, match="revoked already"):
            registry.revoke_device_key(app_id, rotated.keys[1].key_id)

    def test_another_apps_key_is_not_found(self, registry: Registry) -> None:
        app_a, key_a = created(registry, "a")
        app_b, _ = created(registry, "b")
        rotated = registry.rotate_device_key(app_a, overlap_days=30)

        with pytest.raises(NotFound):
            registry.revoke_device_key(app_b, rotated.keys[1].key_id)
        assert registry.authenticate(key_a).app_id == app_a


def test_an_existing_device_key_survives_the_migration(
    empty_database_url: str, tmp_path: Path, master_key: MasterKey
) -> None:
    engine = create_engine(empty_database_url)
    try:
        run_migrations(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO apps (id, name, admin_token_sha256, device_key_sha256, "
                    "created_at) VALUES ('app_old', 'old', 'adm', :d, :t)"
                ),
                {"d": hash_token("pml_dev_installed"), "t": utcnow()},
            )
    finally:
        engine.dispose()

    with Registry(empty_database_url, LocalArtifactStore(tmp_path / "a"), master_key) as registry:
        principal = registry.authenticate("pml_dev_installed")
        keys = registry.list_device_keys("app_old")

    assert (principal.app_id, principal.role) == ("app_old", "device")
    assert [(k.key_id, k.status) for k in keys] == [
        ("dk_" + hash_token("pml_dev_installed")[:16], "active")
    ]


def test_the_downgrade_puts_the_active_key_back_on_the_app(
    database_url: str, tmp_path: Path, master_key: MasterKey
) -> None:
    from alembic import command

    with Registry(database_url, LocalArtifactStore(tmp_path / "a"), master_key) as registry:
        app_id, _ = created(registry)
        active = registry.rotate_device_key(app_id, overlap_days=3).device_key
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0005")
        with engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT device_key_sha256 FROM apps WHERE id = :a"), {"a": app_id}
            ).scalar_one()
    finally:
        engine.dispose()

    assert stored == hash_token(active)
