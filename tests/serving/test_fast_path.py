"""The raw ASGI fast path keeps the FastAPI routes' contract: ids, errors, docs."""

from __future__ import annotations

from device_kit import AppKeys, DeviceServer, DigitsBuild


def test_predict_echoes_the_request_id_on_success(
    server: DeviceServer, digits_app: AppKeys, digits: DigitsBuild
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
    server: DeviceServer, digits_app: AppKeys
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


def test_a_missing_key_answers_401_with_a_bearer_challenge(server: DeviceServer) -> None:
    with server.http() as http:
        response = http.post("/v1/telemetry", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]


def test_a_body_over_the_limit_answers_413(server: DeviceServer, digits_app: AppKeys) -> None:
    body = b'{"events": [' + b" " * (server.settings.server.max_telemetry_events * 1024 + 70_000)
    with server.http(digits_app.device_key) as http:
        response = http.post(
            "/v1/telemetry", content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_the_openapi_document_still_describes_both_routes(server: DeviceServer) -> None:
    with server.http() as http:
        paths = http.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/models/{name}/predict"]
    assert "post" in paths["/v1/telemetry"]
