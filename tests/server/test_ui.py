"""The dashboard: token login into an HttpOnly cookie, models, versions, escaped model card."""

from __future__ import annotations

from pathlib import Path

from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer

from .conftest import push_two_variants


def test_admin_logs_in_and_sees_models_versions_and_an_escaped_card(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        push_two_variants(client, "digits", tmp_path / "v1")
    with live_server.http() as browser:
        assert "Log in" in browser.get("/ui").text
        login = browser.post("/ui/login", data={"token": app_a.admin_token})
        cookie = login.headers["set-cookie"]
        models = browser.get("/ui/models")
        model = browser.get("/ui/models/digits")
        version = browser.get("/ui/models/digits/versions/1")
        missing = browser.get("/ui/models/nope")

    assert login.status_code == 303
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert models.status_code == 200
    assert "digits" in models.text
    assert model.status_code == 200
    assert "v1" in model.text
    assert version.status_code == 200
    for text in ("onnx-fp32", "onnx-int8", "int8", "96 %", "high", "<em>small</em>"):
        assert text in version.text
    assert "<script>alert(1)</script>" not in version.text
    assert "&lt;script&gt;" in version.text
    assert missing.status_code == 404


def test_device_key_and_operator_token_cannot_log_in(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http() as browser:
        device = browser.post("/ui/login", data={"token": app_a.device_key})
        pages = browser.get("/ui/models")
    assert device.status_code == 401
    assert "set-cookie" not in device.headers
    assert pages.status_code == 303
    assert pages.headers["location"] == "/ui?next=/ui/models"


def test_pages_are_gzipped_for_browsers_that_accept_it(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    import gzip

    with live_server.http() as browser:
        browser.post("/ui/login", data={"token": app_a.admin_token})
        zipped = browser.get("/ui/overview", headers={"Accept-Encoding": "gzip"})
        plain = browser.get("/ui/overview", headers={"Accept-Encoding": "identity"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text == plain.text  # httpx decoded it: the same page
    assert int(zipped.headers["content-length"]) < len(gzip.compress(plain.content)) + 64
    assert zipped.headers["vary"] == "Accept-Encoding"
