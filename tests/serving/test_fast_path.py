"""The raw ASGI fast path keeps the FastAPI routes' contract: ids, errors, docs.

Every test works in an app of its own, so the module shares one server per database
(tests/shared_server.py) instead of starting one per test.
"""

from __future__ import annotations

from serving_kit import DigitsBuild

from pocketml.testing import AppKeys, LiveServer
from shared_server import shared_server_fixture

server = shared_server_fixture(devices={"catalog_ttl_s": 0})


def test_predict_echoes_the_request_id_on_success(
    server: LiveServer, digits_app: AppKeys, digits: DigitsBuild
) -> None:
    with server.http(digits_app.device_key) as http:
        response = http.post(
            "/v1/models/digits/predict",
            json={"inputs": digits.inputs[:1].tolist()},
            headers={"X-Request-ID": "trace-42"},
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-42"
    assert response.headers["content-type"] == "application/json"


def test_a_wrong_shape_answers_422_in_the_error_shape(
    server: LiveServer, digits_app: AppKeys
) -> None:
    with server.http(digits_app.device_key) as http:
        response = http.post(
            "/v1/models/digits/predict",
            json={"inputs": [[1.0, 2.0]]},
            headers={"X-Request-ID": "r-7"},
        )
    error = response.json()["error"]
    assert response.status_code == 422
    assert error["code"] == "invalid_input" and "64" in error["message"]
    assert error["request_id"] == "r-7" == response.headers["x-request-id"]


def test_a_missing_key_answers_401_with_a_bearer_challenge(server: LiveServer) -> None:
    with server.http() as http:
        response = http.post("/v1/telemetry", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_a_body_over_the_limit_answers_413(server: LiveServer, digits_app: AppKeys) -> None:
    body = b'{"events": [' + b" " * (
        server.settings.server.limits.max_telemetry_events * 1024 + 70_000
    )
    with server.http(digits_app.device_key) as http:
        response = http.post(
            "/v1/telemetry", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_openapi_document_still_describes_both_routes(server: LiveServer) -> None:
    with server.http() as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/models/{name}/predict"]
    assert "post" in paths["/v1/telemetry"]


CHECKIN = {
    "device_id": "device-0001",
    "platform": "android",
    "os_version": "14",
    "app_version": "1.0.0",
    "formats": ["onnx"],
}


def test_checkin_answers_a_manifest_with_an_etag_then_a_bare_304(
    server: LiveServer, digits_app: AppKeys
) -> None:
    with server.http(digits_app.device_key) as http:
        first = http.post("/v1/checkin", json=CHECKIN, headers={"X-Request-ID": "c-1"})
        again = http.post(
            "/v1/checkin", json=CHECKIN, headers={"If-None-Match": first.headers["etag"]}
        )
    assert first.status_code == 200 and first.headers["x-request-id"] == "c-1"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "private, no-cache"
    assert [m["name"] for m in first.json()["models"]] == ["digits"]
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert "content-type" not in again.headers


def test_checkin_with_bad_facts_or_bad_json_answers_in_the_error_shape(
    server: LiveServer, digits_app: AppKeys
) -> None:
    with server.http(digits_app.device_key) as http:
        facts = http.post("/v1/checkin", json={**CHECKIN, "platform": "symbian"})
        broken = http.post(
            "/v1/checkin", content=b"{", headers={"Content-Type": "application/json"}
        )
    assert facts.status_code == 422 and "platform" in facts.json()["error"]["message"]
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed_json"
