"""Device-key rotation with an overlap through the admin API, the client and the CLI.

One live server for the module, with the device routes' principal cache off
(``auth_ttl_s=0``) so a revocation shows on the next request; the cache's own bound is
tested in test_principal_cache.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import pytest
import typer
from typer.testing import CliRunner

from pocketml.cli import _admin
from pocketml.testing import AppKeys, LiveServer, live_server, server_settings

_names = count()
_FACTS = {
    "device_id": "device-0001",
    "platform": "android",
    "os_version": "14",
    "app_version": "2.3.1",
    "device_model": "Pixel 7",
    "device_class": "android-mid",
    "formats": ["onnx"],
    "runtimes": {"onnxruntime": "1.20.0"},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = server_settings(tmp_path_factory.mktemp("home"), devices={"auth_ttl_s": 0})
    with live_server(settings) as live:
        yield live


@pytest.fixture
def app(server: LiveServer) -> AppKeys:
    return server.create_app(f"rotating-{next(_names)}")


def checkin_status(server: LiveServer, key: str) -> int:
    with server.http(key) as http:
        return http.post("/v1/checkin", json=_FACTS).status_code


def test_installed_builds_keep_checking_in_during_the_overlap(
    server: LiveServer, app: AppKeys
) -> None:
    with server.admin(app.admin_token) as admin:
        rotated = admin.rotate_device_key(overlap_days=30, reason="yearly")
        listed = admin.list_device_keys()

    assert checkin_status(server, app.device_key) == 200
    assert checkin_status(server, rotated.device_key) == 200
    assert [k.status for k in listed.items] == ["active", "expiring"]
    assert listed.items[1].expires_at is not None


def test_overlap_zero_refuses_the_old_key_at_once(server: LiveServer, app: AppKeys) -> None:
    with server.admin(app.admin_token) as admin:
        rotated = admin.rotate_device_key(overlap_days=0, reason="leaked")

    assert checkin_status(server, app.device_key) == 401
    assert checkin_status(server, rotated.device_key) == 200
    assert [k.status for k in rotated.keys] == ["active", "revoked"]


def test_a_revocation_empties_this_replicas_principal_cache(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # An hour of caching: without the purge the old key would keep checking in.
    settings = server_settings(tmp_path_factory.mktemp("cached"), devices={"auth_ttl_s": 3600})
    with live_server(settings) as cached:
        app = cached.create_app("cached")
        assert checkin_status(cached, app.device_key) == 200  # now cached
        with cached.admin(app.admin_token) as admin:
            rotated = admin.rotate_device_key(overlap_days=30)
            assert checkin_status(cached, app.device_key) == 200  # in its overlap: still fine
            admin.revoke_device_key(rotated.keys[1].key_id, "leaked")

        assert checkin_status(cached, app.device_key) == 401
        assert checkin_status(cached, rotated.device_key) == 200


def test_revoking_the_previous_key_ends_the_overlap(server: LiveServer, app: AppKeys) -> None:
    with server.admin(app.admin_token) as admin:
        rotated = admin.rotate_device_key(overlap_days=30)
        revoked = admin.revoke_device_key(rotated.keys[1].key_id, "leaked")

    assert revoked.status == "revoked"
    assert checkin_status(server, app.device_key) == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/admin/app/device-keys/rotate", {"overlap_days": 366}),
        ("/v1/admin/app/device-keys/rotate", {"overlap_days": -1}),
        ("/v1/admin/app/device-keys/rotate", {"overlap_days": "30", "extra": 1}),
        ("/v1/admin/app/device-keys/revoke", {"key_id": "dk_../../x"}),
    ],
)
def test_bad_bodies_are_422_and_change_nothing(
    server: LiveServer, app: AppKeys, path: str, body: dict[str, object]
) -> None:
    with server.http(app.admin_token) as http:
        response = http.post(path, json=body)
    with server.admin(app.admin_token) as admin:
        keys = admin.list_device_keys().items

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"
    assert [k.status for k in keys] == ["active"]


def test_a_device_key_cannot_rotate_device_keys(server: LiveServer, app: AppKeys) -> None:
    with server.http(app.device_key) as http:
        response = http.post("/v1/admin/app/device-keys/rotate", json={})

    assert response.status_code == 403


def test_the_active_key_cannot_be_revoked(server: LiveServer, app: AppKeys) -> None:
    with server.admin(app.admin_token) as admin:
        active = admin.list_device_keys().items[0].key_id
    with server.http(app.admin_token) as http:
        response = http.post("/v1/admin/app/device-keys/revoke", json={"key_id": active})

    assert response.status_code == 409
    assert "rotate first" in response.json()["error"]["message"]


def test_the_cli_lists_rotates_and_revokes(server: LiveServer, app: AppKeys) -> None:
    cli = typer.Typer()
    cli.add_typer(_admin.app_app, name="app")
    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": server.url, "POCKETML_TOKEN": app.admin_token, "COLUMNS": "200"}

    rotated = runner.invoke(cli, ["app", "device-keys", "rotate", "--overlap-days", "7"], env=env)
    new_key = next(w for w in rotated.output.split() if w.startswith("pml_dev_"))
    listed = runner.invoke(cli, ["app", "device-keys", "list"], env=env)
    old_row = next(line for line in listed.output.splitlines() if "expiring" in line)
    old_id = next(w for w in old_row.split() if w.startswith("dk_"))
    revoked = runner.invoke(cli, ["app", "device-keys", "revoke", old_id, "--reason", "t"], env=env)

    assert rotated.exit_code == 0, rotated.output
    assert listed.exit_code == 0 and "active" in listed.output
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert checkin_status(server, new_key) == 200
    assert checkin_status(server, app.device_key) == 401
