"""Registry service contract, run on SQLite and PostgreSQL (the ``database_url`` fixture)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from pocketml.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    SchemaError,
    Unauthorized,
)
from pocketml.protect import verify_package
from pocketml.registry import (
    ModelCreate,
    Registry,
    VersionInfo,
)


def _trusted(registry: Registry, app_id: str) -> dict[str, bytes]:
    keys = registry.get_app(app_id).public_keys
    return {key_id: base64.b64decode(value) for key_id, value in keys.items()}


class TestApps:
    def test_create_app_returns_prefixed_credentials_and_a_signing_key(
        self, registry: Registry
    ) -> None:
        created = registry.create_app("shop")
        assert created.admin_token.startswith("pml_adm_")
        assert created.device_key.startswith("pml_dev_")
        assert list(created.app.public_keys) == [created.app.signing_key_id]
        public = base64.b64decode(created.app.public_keys[created.app.signing_key_id])
        assert len(public) == 32
        assert registry.get_app(created.app.id) == created.app

    def test_duplicate_app_name_is_a_conflict(self, registry: Registry) -> None:
        registry.create_app("shop")
        with pytest.raises(Conflict, match="exists already"):
            registry.create_app("shop")

    def test_tokens_authenticate_as_admin_and_device(self, registry: Registry) -> None:
        created = registry.create_app("shop")
        assert registry.authenticate(created.admin_token).role == "admin"
        device = registry.authenticate(created.device_key)
        assert (device.app_id, device.role) == (created.app.id, "device")

    @pytest.mark.parametrize("token", ["", "Bearer x", "pml_adm_wrong", "pml_dev_wrong"])
    def test_unknown_tokens_are_unauthorized(self, registry: Registry, token: str) -> None:
        registry.create_app("shop")
        with pytest.raises(Unauthorized):
            registry.authenticate(token)

    def test_only_token_hashes_are_stored(self, registry: Registry) -> None:
        created = registry.create_app("shop")
        with registry.store.engine.connect() as conn:
            rows = [tuple(map(str, row)) for row in conn.execute(sa.text("SELECT * FROM apps"))]
        flat = " ".join(" ".join(row) for row in rows)
        assert created.admin_token not in flat
        assert created.device_key not in flat
        assert hashlib.sha256(created.admin_token.encode()).hexdigest() in flat

    def test_rotating_a_credential_revokes_only_that_one(self, registry: Registry) -> None:
        created = registry.create_app("shop")
        new_admin = registry.rotate_credential(created.app.id, "admin")
        with pytest.raises(Unauthorized):
            registry.authenticate(created.admin_token)
        assert registry.authenticate(new_admin).role == "admin"
        assert registry.authenticate(created.device_key).role == "device"
        new_device = registry.rotate_credential(created.app.id, "device")
        assert new_device.startswith("pml_dev_")
        with pytest.raises(Unauthorized):
            registry.authenticate(created.device_key)

    def test_rotating_an_unknown_credential_kind_is_invalid(self, registry: Registry) -> None:
        created = registry.create_app("shop")
        with pytest.raises(InvalidInput, match="'admin' or 'device'"):
            registry.rotate_credential(created.app.id, "operator")  # type: ignore[arg-type]

    def test_list_apps_lists_every_app(self, registry: Registry) -> None:
        names = {registry.create_app(name).app.name for name in ("a", "b", "c")}
        assert {app.name for app in registry.list_apps()} == names

    def test_unknown_app_is_not_found(self, registry: Registry) -> None:
        with pytest.raises(NotFound):
            registry.get_app("app_missing")
        with pytest.raises(NotFound):
            registry.rotate_signing_key("app_missing")


class TestSigningKeyRotation:
    def test_rotation_keeps_old_public_keys_and_signs_with_the_new_one(
        self, registry: Registry, app_id: str, push: Callable[..., VersionInfo], tmp_path: Path
    ) -> None:
        old = registry.get_app(app_id)
        v1 = push(app_id, seed=1)
        rotated = registry.rotate_signing_key(app_id)
        v2 = push(app_id, seed=2)
        assert rotated.signing_key_id != old.signing_key_id
        assert set(rotated.public_keys) == {old.signing_key_id, rotated.signing_key_id}
        assert v1.variants[0].signing_key_id == old.signing_key_id
        assert v2.variants[0].signing_key_id == rotated.signing_key_id
        trusted = _trusted(registry, app_id)
        for version in (v1, v2):
            ref = registry.get_package(app_id, version.variants[0].package_id)
            path = tmp_path / f"{ref.sha256}.zip"
            path.write_bytes(b"".join(registry.artifacts.iter_range(ref.key)))
            verified = verify_package(path, trusted_keys=trusted, app_id=app_id)
            assert verified.signing_key_id == version.variants[0].signing_key_id


class TestModels:
    def test_create_get_and_list_a_model(self, registry: Registry, schema: dict) -> None:
        app = registry.create_app("shop").app
        made = registry.create_model(
            app.id, ModelCreate(name="digits", description="0-9", schema=schema)
        )
        assert (made.name, made.latest_version, made.production_version) == ("digits", None, None)
        assert made.schema["inputs"][0]["name"] == "pixels"
        assert registry.get_model(app.id, "digits") == made
        assert registry.list_models(app.id).items == (made,)

    def test_duplicate_model_is_a_conflict_but_other_apps_may_reuse_the_name(
        self, registry: Registry, app_id: str, other_app_id: str, schema: dict
    ) -> None:
        with pytest.raises(Conflict, match="exists already"):
            registry.create_model(app_id, ModelCreate(name="digits", schema=schema))
        assert registry.get_model(other_app_id, "digits").app_id == other_app_id

    def test_bad_schema_is_a_schema_error_naming_the_field(
        self, registry: Registry, schema: dict
    ) -> None:
        app = registry.create_app("shop").app
        schema["inputs"][0]["dtype"] = "complex128"
        with pytest.raises(SchemaError, match="dtype"):
            registry.create_model(app.id, ModelCreate(name="digits", schema=schema))
        assert registry.list_models(app.id).total == 0

    @pytest.mark.parametrize("name", ["Digits", "-x", "", "a" * 65, "a b"])
    def test_bad_model_names_are_rejected_by_the_input_model(self, name: str) -> None:
        with pytest.raises(ValidationError):
            ModelCreate(name=name, schema={})

    def test_unknown_model_is_not_found(self, registry: Registry, app_id: str) -> None:
        with pytest.raises(NotFound, match="no model named 'nope'"):
            registry.get_model(app_id, "nope")

    def test_list_models_paginates_by_name_and_filters_by_prefix(
        self, registry: Registry, schema: dict
    ) -> None:
        app = registry.create_app("shop").app
        for name in ("b1", "a2", "a_x", "ab", "a1"):
            registry.create_model(app.id, ModelCreate(name=name, schema=schema))
        first = registry.list_models(app.id, limit=2)
        second = registry.list_models(app.id, limit=2, offset=2)
        assert [m.name for m in first.items] == ["a1", "a2"]
        assert [m.name for m in second.items] == ["a_x", "ab"]
        assert (first.total, second.offset) == (5, 2)
        assert [m.name for m in registry.list_models(app.id, prefix="a_").items] == ["a_x"]
        assert registry.list_models(app.id, prefix="zz").total == 0

    @pytest.mark.parametrize(("limit", "offset"), [(0, 0), (1001, 0), (10, -1)])
    def test_bad_windows_are_invalid_input(
        self, registry: Registry, app_id: str, limit: int, offset: int
    ) -> None:
        with pytest.raises(InvalidInput, match="limit"):
            registry.list_models(app_id, limit=limit, offset=offset)
