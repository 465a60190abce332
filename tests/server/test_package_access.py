"""Packages a CDN may cache: anonymous fetch of public apps' packages, HEAD, private apps.

One live server for the module (SQLite); each test makes its own app, so none depends on
another's state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import httpx
import pytest

from pocketml.server.routes.packages import CACHE_PRIVATE, CACHE_PUBLIC
from pocketml.testing import AppKeys, LiveServer, live_server, model_variant, server_settings

_names = count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(server_settings(tmp_path_factory.mktemp("home"))) as live:
        yield live


def released(server: LiveServer, tmp_path: Path) -> tuple[AppKeys, str, int]:
    """A new app with one pushed package: (app, package id, package size)."""
    app = server.create_app(f"cdn-app-{next(_names)}")
    variant = model_variant(tmp_path, "onnx-fp32", filename="m.onnx", seed=7, size=5000)
    version = server.push(app, "digits", [variant])
    package = version.variants[0]
    return app, package.package_id, package.package_size


def test_a_public_package_is_served_without_a_key_and_cacheable_by_a_cdn(
    server: LiveServer, tmp_path: Path
) -> None:
    _, package_id, size = released(server, tmp_path)

    with server.http() as http:
        response = http.get(f"/v1/packages/{package_id}")

    assert response.status_code == 200
    assert response.headers["cache-control"] == CACHE_PUBLIC
    assert "authorization" not in response.headers.get("vary", "").lower()
    assert hashlib.sha256(response.content).hexdigest() == package_id
    assert int(response.headers["content-length"]) == size


def test_head_answers_the_headers_of_get_without_a_body(server: LiveServer, tmp_path: Path) -> None:
    app, package_id, size = released(server, tmp_path)
    names = ("content-length", "etag", "accept-ranges", "cache-control", "content-type")

    with server.http(app.device_key) as http:
        got = http.get(f"/v1/packages/{package_id}")
        head = http.head(f"/v1/packages/{package_id}")
        ranged = http.head(f"/v1/packages/{package_id}", headers={"Range": "bytes=10-"})
        beyond = http.head(f"/v1/packages/{package_id}", headers={"Range": f"bytes={size}-"})

    assert head.status_code == 200 and head.content == b""
    assert {n: head.headers[n] for n in names} == {n: got.headers[n] for n in names}
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 10-{size - 1}/{size}"
    assert ranged.headers["content-length"] == str(size - 10)
    assert beyond.status_code == 416


def test_if_range_with_another_etag_answers_the_whole_package(
    server: LiveServer, tmp_path: Path
) -> None:
    _, package_id, size = released(server, tmp_path)

    with server.http() as http:
        stale = http.get(
            f"/v1/packages/{package_id}", headers={"Range": "bytes=10-", "If-Range": '"0000"'}
        )
        fresh = http.get(
            f"/v1/packages/{package_id}",
            headers={"Range": "bytes=10-", "If-Range": f'"{package_id}"'},
        )

    assert (stale.status_code, len(stale.content)) == (200, size)
    assert (fresh.status_code, len(fresh.content)) == (206, size - 10)


def test_a_private_apps_package_needs_its_key_and_is_not_shared_cacheable(
    server: LiveServer, tmp_path: Path
) -> None:
    app, package_id, _ = released(server, tmp_path)
    with server.admin(app.admin_token) as admin:
        changed = admin.set_package_access(public=False, reason="plaintext models")
        shown = admin.package_access()

    with server.http() as anonymous, server.http(app.device_key) as device:
        refused = anonymous.get(f"/v1/packages/{package_id}")
        refused_head = anonymous.head(f"/v1/packages/{package_id}")
        allowed = device.get(f"/v1/packages/{package_id}")

    assert (changed.public, shown.public) == (False, False)
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert "device key" in refused.json()["error"]["message"]
    assert refused_head.status_code == 404
    assert allowed.status_code == 200
    assert allowed.headers["cache-control"] == CACHE_PRIVATE


def test_a_package_of_another_app_is_404_with_a_key_even_when_public(
    server: LiveServer, tmp_path: Path
) -> None:
    _, package_id, _ = released(server, tmp_path)
    other = server.create_app(f"other-{next(_names)}")

    with server.http(other.device_key) as http:
        response = http.get(f"/v1/packages/{package_id}")

    assert response.status_code == 404


@pytest.mark.parametrize("token", ["pml_dev_wrong", "not-a-token"])
def test_a_wrong_key_is_401_not_an_anonymous_fetch(
    server: LiveServer, tmp_path: Path, token: str
) -> None:
    _, package_id, _ = released(server, tmp_path)

    with server.http(token) as http:
        response = http.get(f"/v1/packages/{package_id}")

    assert response.status_code == 401


def test_an_unknown_package_without_a_key_is_404(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        response = http.get("/v1/packages/" + "0" * 64)

    assert response.status_code == 404
