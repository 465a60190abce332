"""Bad input never yields a 500 and always answers in the one JSON error shape.

The tests work inside an app of their own (or send no token), so they share one server per
database (``module_live_server``) instead of starting one each; each still runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pocketml import testing
from pocketml.errors import Conflict, IntegrityError, NotFound, PayloadTooLarge
from pocketml.server.client import _MultipartBody
from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import (
    DIGITS_SCHEMA,
    LiveServer,
    model_variant,
    server_settings,
)


@pytest.fixture
def live_server(module_live_server: LiveServer) -> LiveServer:
    """This module's shared server (on SQLite, then PostgreSQL)."""
    return module_live_server


@pytest.fixture
def app_a(module_app: AppCreatedPublic) -> AppCreatedPublic:
    """A fresh app for this test on the shared server."""
    return module_app


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return dict(error)


def test_malformed_json_answers_400(live_server: LiveServer, app_a: AppCreatedPublic) -> None:
    with live_server.http(app_a.admin_token) as http:
        response = http.post(
            "/v1/admin/models",
            content=b'{"name": "x", ',
            headers={"Content-Type": "application/json"},
        )
    _assert_error(response, 400, "malformed_json")


def test_wrong_types_and_unknown_fields_answer_422_naming_each_field(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http(app_a.admin_token) as http:
        response = http.post(
            "/v1/admin/models", json={"name": 5, "schema": "nope", "colour": "red"}
        )
    error = _assert_error(response, 422, "invalid_input")
    for field in ("name", "schema", "colour"):
        assert f"body field '{field}'" in error["message"]


def test_bad_schema_answers_422_with_the_schema_error_code(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/models", json={"name": "m", "schema": {"inputs": []}})
    _assert_error(response, 422, "invalid_schema")


def test_unknown_route_and_wrong_method_use_the_error_shape(live_server: LiveServer) -> None:
    with live_server.http() as http:
        missing = http.get("/v1/nothing-here")
        wrong = http.put("/healthz")
    _assert_error(missing, 404, "not_found")
    _assert_error(wrong, 405, "method_not_allowed")


def test_request_id_is_echoed_when_given(live_server: LiveServer) -> None:
    with live_server.http() as http:
        response = http.get("/v1/nothing", headers={"X-Request-ID": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    assert response.json()["error"]["request_id"] == "trace-123"


def test_unknown_model_answers_404(live_server: LiveServer, app_a: AppCreatedPublic) -> None:
    with live_server.admin(app_a.admin_token) as client, pytest.raises(NotFound, match="nope"):
        client.show_model("nope")


def test_sha256_mismatch_answers_422_and_stores_nothing(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    entry, model_file = model_variant(tmp_path, "v", seed=1, size=5000, sha256="0" * 64)
    meta = {"variants": [entry]}
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        with pytest.raises(IntegrityError, match="sha256"):
            client.push_files("digits", meta, {"v": model_file})
        assert client.list_versions("digits").total == 0
        assert client.show_model("digits").latest_version is None
    assert list((live_server.settings.home / "tmp").glob("upload-*")) == []


def test_duplicate_version_answers_409(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    entry, model_file = model_variant(tmp_path, "v", seed=2, size=5000)
    meta = {"version": 7, "variants": [entry]}
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        client.push_files("digits", meta, {"v": model_file})
        with pytest.raises(Conflict, match="v7 exists already"):  # forced past the same-files check
            client.push_files("digits", meta, {"v": model_file}, force=True)
        assert client.list_versions("digits").total == 1


def test_metadata_with_wrong_fields_answers_422(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    entry, model_file = model_variant(tmp_path, "v", seed=3, size=100)
    bad = {"variants": [{**entry, "format": "exe", "extra": 1}]}
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        response = client.http.post(
            "/v1/admin/models/digits/versions",
            files={"metadata": (None, json.dumps(bad)), "v": ("m.onnx", model_file.read_bytes())},
        )
    error = _assert_error(response, 422, "invalid_input")
    assert "metadata.variants.0.format" in error["message"]
    assert "metadata.variants.0.extra" in error["message"]


def test_push_that_is_not_multipart_answers_415(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        response = client.http.post("/v1/admin/models/digits/versions", json={"variants": []})
    _assert_error(response, 415, "unsupported_media_type")


def test_push_without_a_metadata_part_answers_400(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        response = client.http.post(
            "/v1/admin/models/digits/versions", files={"v": ("m.onnx", b"1234")}
        )
    _assert_error(response, 400, "invalid_input")


def test_upload_over_the_limit_answers_413_and_leaves_no_temp_file(
    tmp_path: Path, database_url: str
) -> None:
    settings = server_settings(tmp_path / "home", database_url, limits={"max_upload_mb": 0.05})
    entry, big = model_variant(tmp_path, "v", seed=4, size=80_000)
    meta = {"variants": [entry]}
    with testing.live_server(settings) as live:
        with live.admin() as operator:
            created = operator.create_app("small")
        with live.admin(created.admin_token) as client:
            client.create_model("digits", DIGITS_SCHEMA)
            with pytest.raises(PayloadTooLarge, match="at most"):
                client.push_files("digits", meta, {"v": big})
            # without Content-Length (chunked), the streamed byte count trips the limit
            body = b"".join(_MultipartBody(json.dumps(meta).encode(), {"v": big}).iter(None))
            boundary = body.split(b"\r\n", 1)[0][2:].decode()
            response = client.http.post(
                "/v1/admin/models/digits/versions",
                content=iter([body[:40_000], body[40_000:]]),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            _assert_error(response, 413, "payload_too_large")
            assert client.list_versions("digits").total == 0
    assert list((settings.home / "tmp").glob("upload-*")) == []


def test_an_unexpected_exception_answers_500_hiding_internals_and_logs_it(
    live_server: LiveServer,
    app_a: AppCreatedPublic,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pocketml.registry import Registry

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Registry, "list_models", explode)  # fault injection
    with live_server.http(app_a.admin_token) as http:
        response = http.get("/v1/admin/models")
    error = _assert_error(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert error["request_id"] in error["message"]
    assert "secret internal detail" in caplog.text
