"""End to end against a live server: app -> model -> push -> list -> promote -> download."""

from __future__ import annotations

import base64
import hashlib
import logging
import stat
from pathlib import Path

import httpx
import pytest

from pocketml import testing
from pocketml.config import Settings
from pocketml.protect import extract_model, verify_package
from pocketml.server.schemas import AppCreatedPublic, VersionPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer

from .conftest import push_two_variants


def _trusted_keys(created_app: AppCreatedPublic, live_server: LiveServer) -> dict[str, bytes]:
    with live_server.admin(created_app.admin_token) as client:
        app = client.show_app()
    return {key_id: base64.b64decode(raw) for key_id, raw in app.public_keys.items()}


def test_push_list_promote_and_download_a_version_with_two_variants(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA, description="8x8 digits")
        pushed = push_two_variants(client, "digits", tmp_path / "v1", seed=1)
        assert isinstance(pushed, VersionPublic)
        second = push_two_variants(client, "digits", tmp_path / "v2", seed=2)
        assert isinstance(second, VersionPublic)

        assert (pushed.version, second.version) == (1, 2)
        assert pushed.stage == "candidate"
        assert sorted(v.name for v in pushed.variants) == ["onnx-fp32", "onnx-int8"]

        page = client.list_versions("digits", limit=1)
        assert (page.total, [v.version for v in page.items]) == (2, [2])
        page2 = client.list_versions("digits", limit=1, offset=1)
        assert [v.version for v in page2.items] == [1]

        promoted = client.set_stage("digits", 1, "production")
        assert promoted.stage == "production"
        assert client.show_model("digits").production_version == 1
        assert [v.version for v in client.list_versions("digits", stage="production").items] == [1]
        models = client.list_models(prefix="dig")
        assert [m.name for m in models.items] == ["digits"]
        assert client.list_models(prefix="zzz").total == 0


def test_downloaded_package_verifies_with_the_apps_public_key(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        version = push_two_variants(client, "digits", tmp_path / "v1", seed=3)
    assert isinstance(version, VersionPublic)
    variant = next(v for v in version.variants if v.name == "onnx-fp32")
    original = (tmp_path / "v1" / "fp32-3.onnx").read_bytes()

    with live_server.http(app_a.device_key) as http:
        response = http.get(f"/v1/packages/{variant.package_id}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(variant.package_size)
    assert response.headers["etag"].strip('"') == variant.package_id
    assert response.headers["accept-ranges"] == "bytes"
    assert hashlib.sha256(response.content).hexdigest() == variant.package_id
    package = tmp_path / "pkg.zip"
    package.write_bytes(response.content)

    verified = verify_package(
        package, trusted_keys=_trusted_keys(app_a, live_server), app_id=app_a.app.id
    )
    model_file = extract_model(verified, tmp_path / "model.onnx")
    assert model_file.read_bytes() == original


def test_range_requests_resume_a_download_and_reject_unsatisfiable_ranges(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        version = push_two_variants(client, "digits", tmp_path / "v1", seed=4)
    assert isinstance(version, VersionPublic)
    variant = version.variants[0]
    size = variant.package_size
    with live_server.http(app_a.device_key) as http:
        whole = http.get(f"/v1/packages/{variant.package_id}").content
        head = http.get(f"/v1/packages/{variant.package_id}", headers={"Range": "bytes=0-99"})
        rest = http.get(f"/v1/packages/{variant.package_id}", headers={"Range": "bytes=100-"})
        suffix = http.get(f"/v1/packages/{variant.package_id}", headers={"Range": "bytes=-10"})
        beyond = http.get(f"/v1/packages/{variant.package_id}", headers={"Range": f"bytes={size}-"})

    assert (head.status_code, rest.status_code, suffix.status_code) == (206, 206, 206)
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert rest.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    assert head.content + rest.content == whole
    assert suffix.content == whole[-10:]
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.json()["error"]["code"] == "range_not_satisfiable"


def test_signing_key_rotation_keeps_old_packages_verifiable(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        old = push_two_variants(client, "digits", tmp_path / "v1", seed=5)
        before = client.show_app()
        rotated = client.request(
            "POST", "/v1/admin/app/rotate", json={"credential": "signing_key"}
        ).json()
    assert isinstance(old, VersionPublic)

    assert rotated["app"]["signing_key_id"] != before.signing_key_id
    assert before.signing_key_id in rotated["app"]["public_keys"]
    with live_server.http(app_a.admin_token) as http:
        body = http.get(f"/v1/packages/{old.variants[0].package_id}").content
    package = tmp_path / "old.zip"
    package.write_bytes(body)
    verified = verify_package(
        package, trusted_keys=_trusted_keys(app_a, live_server), app_id=app_a.app.id
    )
    assert verified.signing_key_id == before.signing_key_id


def test_first_start_generates_an_operator_token_file_and_logs_only_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'r.db'}")
    caplog.set_level(logging.INFO, logger="pocketml.server")
    with testing.live_server(settings) as live, httpx.Client(base_url=live.url) as http:
        token_file = settings.home / "operator.token"
        token = token_file.read_text().strip()
        created = http.post(
            "/v1/admin/apps",
            json={"name": "first"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert created.status_code == 201
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert str(token_file) in caplog.text
    assert token not in caplog.text
