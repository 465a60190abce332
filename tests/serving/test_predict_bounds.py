"""Predict refuses inputs its model cannot take, with a 422 naming the input, never a 5xx.

Each case was a 500 or a silent coercion before: a 25-digit integer overflowed the float32
conversion, ``true`` ran as 1.0, a 400-digit integer and deep nesting reached the
``json.loads`` fallback, a lone-surrogate ``prediction_id`` could not be written back.
Both the fast path (``server/_fast.py``) and the FastAPI route share the same checks.

Every test works in an app of its own, so the module shares one server per database
(tests/shared_server.py) instead of starting one per test.
"""

from __future__ import annotations

import pytest
from serving_kit import DigitsBuild

from pocketml.testing import AppKeys, LiveServer
from shared_server import shared_server_fixture

server = shared_server_fixture(devices={"catalog_ttl_s": 0})


ROW = [0.0] * 64


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ([[True] * 64], "only numbers"),
        ([[*ROW[:63], "1"]], "only numbers"),
        ([[*ROW[:63], None]], "only numbers"),
        ([[*ROW[:63], 10**39]], "beyond the float32 range"),
        ([[*ROW[:63], 1e39]], "beyond the float32 range"),
        ([[*ROW[:63], [1.0]]], "only numbers"),
        ([ROW, ROW[:10]], "shape"),
        (True, "nested list"),
    ],
    ids=["booleans", "a string", "a null", "a 40-digit int", "1e39", "mixed", "ragged", "true"],
)
def test_inputs_the_model_cannot_take_answer_422_naming_the_input(
    server: LiveServer, digits_app: AppKeys, digits: DigitsBuild, inputs: object, needle: str
) -> None:
    name = digits.schema["inputs"][0]["name"]
    with server.http(digits_app.device_key) as http:
        response = http.post("/v1/models/digits/predict", json={"inputs": inputs})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert f"'{name}'" in error["message"] or "inputs" in error["message"]
    assert needle in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [[' + b"1" * 400 + b"]]}",
        b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"inputs": [[NaN]]}',
        b'{"inputs": [[0.0]], "prediction_id": "\\ud800"}',
    ],
    ids=["a 400-digit int", "deep nesting", "NaN", "a lone surrogate prediction id"],
)
def test_bodies_that_are_not_strict_json_answer_400(
    server: LiveServer, digits_app: AppKeys, body: bytes
) -> None:
    headers = {"Content-Type": "application/json"}
    with server.http(digits_app.device_key) as http:
        response = http.post("/v1/models/digits/predict", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_json"


def test_a_nul_prediction_id_answers_422_and_a_good_request_still_answers(
    server: LiveServer, digits_app: AppKeys
) -> None:
    with server.http(digits_app.device_key) as http:
        bad = http.post("/v1/models/digits/predict", json={"inputs": ROW, "prediction_id": "a\0"})
        good = http.post("/v1/models/digits/predict", json={"inputs": ROW, "prediction_id": "p"})
    assert bad.status_code == 422 and "prediction_id" in bad.json()["error"]["message"]
    assert good.status_code == 200 and good.json()["prediction_id"] == "p"


def test_a_model_name_with_a_nul_answers_422_on_the_fast_path(
    server: LiveServer, digits_app: AppKeys
) -> None:
    with server.http(digits_app.device_key) as http:
        response = http.post("/v1/models/a%00b/predict", json={"inputs": ROW})
    assert response.status_code == 422, response.text
    assert "NUL" in response.json()["error"]["message"]
