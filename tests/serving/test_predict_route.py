"""POST /v1/models/{name}/predict against a real ONNX model (SQLite + PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from serving_kit import DigitsBuild, batching_settings, onnx_variant

from pocketml.testing import AppKeys, LiveServer, live_server, model_variant


def direct_probabilities(digits: DigitsBuild, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(digits.onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])


def test_predictions_equal_the_model_run_directly(
    server: LiveServer, digits_app: AppKeys, digits: DigitsBuild
) -> None:
    x = digits.inputs[:20]
    with server.http(digits_app.device_key) as http:
        response = http.post(
            "/v1/models/digits/predict", json={"inputs": x.tolist(), "prediction_id": "p-1"}
        )
    body = response.json()
    expected = direct_probabilities(digits, x)
    assert response.status_code == 200
    assert body["model"] == "digits" and body["version"] == 1
    assert body["variant"] == "lr-onnx-fp32" and body["prediction_id"] == "p-1"
    assert body["server_latency_ms"] >= 0
    got = np.array([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["index"] for p in body["predictions"]] == expected.argmax(axis=1).tolist()
    assert [p["label"] for p in body["predictions"]] == [str(i) for i in expected.argmax(axis=1)]
    np.testing.assert_allclose(
        [p["confidence"] for p in body["predictions"]], expected.max(1), atol=1e-5
    )


def test_one_sample_without_a_batch_axis_gets_one_prediction(
    server: LiveServer, digits_app: AppKeys, digits: DigitsBuild
) -> None:
    x = digits.inputs[3]
    with server.http(digits_app.device_key) as http:
        body = http.post("/v1/models/digits/predict", json={"inputs": x.tolist()}).json()
    assert len(body["predictions"]) == 1 and body["prediction_id"] is None
    assert body["predictions"][0]["index"] == int(direct_probabilities(digits, x[None]).argmax())


def test_the_model_file_is_extracted_once_into_home_models(
    server: LiveServer, digits_app: AppKeys, digits: DigitsBuild
) -> None:
    with server.http(digits_app.device_key) as http:
        for _ in range(3):
            http.post("/v1/models/digits/predict", json={"inputs": digits.inputs[:2].tolist()})
    files = [p for p in (server.settings.home / "models").iterdir() if not p.name.startswith(".")]
    assert [p.read_bytes() == digits.onnx_path.read_bytes() for p in files] == [True]


def test_bad_inputs_answer_4xx_naming_what_was_expected(
    server: LiveServer, digits_app: AppKeys
) -> None:
    route = "/v1/models/digits/predict"
    with server.http(digits_app.device_key) as http:
        shape = http.post(route, json={"inputs": [[0.0] * 63]})
        dtype = http.post(route, json={"inputs": [["a"] * 64]})
        nan = http.post(
            route,
            content=b'{"inputs": [[NaN' + b", 0.0" * 63 + b"]]}",
            headers={"Content-Type": "application/json"},
        )
        empty = http.post(route, json={"inputs": []})
        missing = http.post(route, json={"samples": [[0.0] * 64]})
        not_json = http.post(route, content=b"{", headers={"Content-Type": "application/json"})
    assert shape.status_code == 422 and "(N, 64)" in shape.json()["error"]["message"]
    assert dtype.status_code == 422 and "only numbers" in dtype.json()["error"]["message"]
    assert nan.status_code == 400 and "NaN" in nan.json()["error"]["message"]  # not JSON
    assert empty.status_code == 422
    assert missing.status_code == 422 and "inputs" in missing.json()["error"]["message"]
    assert not_json.status_code == 400


def test_unknown_models_and_models_without_production_are_404(
    server: LiveServer, digits_app: AppKeys, tmp_path: Path
) -> None:
    server.push(digits_app, "draft", [model_variant(tmp_path, "d-onnx")], stage="candidate")
    with server.http(digits_app.device_key) as http:
        unknown = http.post("/v1/models/nope/predict", json={"inputs": [[0.0] * 64]})
        draft = http.post("/v1/models/draft/predict", json={"inputs": [[0.0] * 64]})
    assert unknown.status_code == 404
    assert draft.status_code == 404 and "production" in draft.json()["error"]["message"]


def test_predict_needs_the_apps_device_key(server: LiveServer, digits_app: AppKeys) -> None:
    other = server.create_app("other")
    with server.http(other.device_key) as http:
        foreign = http.post("/v1/models/digits/predict", json={"inputs": [[0.0] * 64]})
    with server.http("pml_dev_unknown") as http:
        unknown = http.post("/v1/models/digits/predict", json={"inputs": [[0.0] * 64]})
    assert foreign.status_code == 404
    assert unknown.status_code == 401


def test_a_promotion_is_served_after_one_background_refresh_and_a_demotion_stops_serving(
    tmp_path: Path, database_url: str, digits: DigitsBuild
) -> None:
    # resolve_ttl_s=0 and no stale grace: every request finds its entry expired and waits
    # for the (one shared) refresh, so what it is answered with is what the registry said
    # after the previous request: deterministic, whatever the machine's load.
    settings = batching_settings(
        tmp_path / "home", database_url, resolve_ttl_s=0.0, stale_grace_s=0.0
    )
    route = "/v1/models/digits/predict"
    body = {"inputs": digits.inputs[:1].tolist()}
    with live_server(settings) as server:
        app = server.create_app("refresh")
        server.push(app, "digits", [onnx_variant(digits, "lr")], schema=digits.schema)
        with server.http(app.device_key) as http:
            assert http.post(route, json=body).json()["version"] == 1
            server.push(app, "digits", [onnx_variant(digits, "lr")], force=True)  # v2, production
            versions = [http.post(route, json=body).json()["version"] for _ in range(50)]
            with server.admin(app.admin_token) as admin:
                admin.set_stage("digits", 2, "archived")
            statuses = [http.post(route, json=body).status_code for _ in range(50)]
    assert versions == [2] * 50  # the first request after the push waits for the refresh
    assert statuses == [404] * 50  # and so does the first after the demotion
