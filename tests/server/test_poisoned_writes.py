"""No accepted write can break a later read: hostile values are refused, reads stay 200.

Each case below was stored before the fix and then made every read of it answer 500 for
good (a 400-digit shape dimension broke every check-in of the app; a lone surrogate in a
rollout's targeting broke the rollout list). Each test sends the write, asserts a 4xx in
the one error shape, and then reads back what the write would have broken.

Every test works inside an app of its own, so the module shares one server per database
(``module_live_server``) instead of starting one per test; each test still runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer

from .conftest import push_two_variants


@pytest.fixture
def live_server(module_live_server: LiveServer) -> LiveServer:
    """This module's shared server (on SQLite, then PostgreSQL)."""
    return module_live_server


@pytest.fixture
def app_a(module_app: AppCreatedPublic) -> AppCreatedPublic:
    """A fresh app for this test on the shared server."""
    return module_app


JSON = {"Content-Type": "application/json"}
CHECKIN = {
    "device_id": "device-0001",
    "platform": "android",
    "os_version": "14",
    "app_version": "1.0",
    "formats": ["onnx"],
}


def _schema(**input_fields: Any) -> dict[str, Any]:
    schema = orjson.loads(orjson.dumps(DIGITS_SCHEMA))
    schema["inputs"][0].update(input_fields)
    return schema


def _raw(model: dict[str, Any], replace: dict[str, str]) -> bytes:
    """JSON text of ``model`` with placeholders swapped for raw (hostile) JSON tokens."""
    text = orjson.dumps(model).decode()
    for placeholder, token in replace.items():
        text = text.replace(f'"{placeholder}"', token)
    return text.encode()


def _refused(response: httpx.Response, *fragments: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["code"] in ("invalid_input", "malformed_json", "invalid_schema"), error
    for fragment in fragments:
        assert fragment in error["message"], error["message"]


def _checkin_works(live_server: LiveServer, device_key: str) -> None:
    with live_server.http(device_key) as http:
        response = http.post("/v1/checkin", json=CHECKIN)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("token", "fragments"),
    [
        ("1" * 400, ("not valid JSON",)),
        ("1" * 25, ("shape",)),
        ("9223372036854775808", ("shape",)),
        ("1e400", ("not valid JSON",)),
    ],
    ids=["400 digits", "25 digits", "2^63", "1e400"],
)
def test_a_shape_dimension_beyond_the_bounds_is_refused_and_check_in_still_works(
    live_server: LiveServer, app_a: AppCreatedPublic, token: str, fragments: tuple[str, ...]
) -> None:
    body = _raw({"name": "digits", "schema": _schema(shape=[None, "DIM"])}, {"DIM": token})
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/models", content=body, headers=JSON)
        listed = http.get("/v1/admin/models")
    _refused(response, *fragments)
    assert listed.status_code == 200 and listed.json()["total"] == 0
    _checkin_works(live_server, app_a.device_key)


@pytest.mark.parametrize(
    ("label", "fragments"),
    [('"\\ud800"', ("not valid JSON", "surrogate")), ('"a\\u0000b"', ("labels", "NUL"))],
    ids=["lone surrogate", "NUL"],
)
def test_a_label_that_cannot_be_stored_is_refused(
    live_server: LiveServer, app_a: AppCreatedPublic, label: str, fragments: tuple[str, ...]
) -> None:
    schema = orjson.loads(orjson.dumps(DIGITS_SCHEMA))
    schema["outputs"][0]["labels"][0] = "LABEL"
    body = _raw({"name": "digits", "schema": schema}, {"LABEL": label})
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/models", content=body, headers=JSON)
        assert http.get("/v1/admin/models").status_code == 200
    _refused(response, *fragments)
    _checkin_works(live_server, app_a.device_key)


@pytest.mark.parametrize(
    "field", ["description", "name"], ids=["description with NUL", "name with NUL"]
)
def test_model_text_with_a_nul_is_refused(
    live_server: LiveServer, app_a: AppCreatedPublic, field: str
) -> None:
    body = {"name": "digits", "description": "ok", "schema": DIGITS_SCHEMA, field: "a\0b"}
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/models", json=body)
        assert http.get("/v1/admin/models").status_code == 200
    _refused(response, field)


@pytest.mark.parametrize(
    "token", ["1" * 400, "18446744073709551616", "9223372036854775808", "-1"], ids=str
)
def test_a_max_cellular_bytes_beyond_64_bits_is_refused_and_the_policy_still_reads(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, token: str
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        push_two_variants(client, "digits", tmp_path)
    body = _raw({"download": {"max_cellular_bytes": "N"}}, {"N": token})
    with live_server.http(app_a.admin_token) as http:
        http.post("/v1/admin/models/digits/versions/1/stage", json={"stage": "production"})
        response = http.put("/v1/admin/models/digits/versions/1/policy", content=body, headers=JSON)
        policy = http.get("/v1/admin/models/digits/versions/1/policy")
    assert 400 <= response.status_code < 500, response.text
    assert policy.status_code == 200, policy.text
    _checkin_works(live_server, app_a.device_key)


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ('[{"field": "country", "in": ["\\ud800"]}]', "not valid JSON"),
        ('[{"field": "country", "in": ["D\\u0000E"]}]', "NUL"),
        ('[{"field": "country", "in": ["' + "x" * 1000 + '"]}]', "128 characters"),
        ('[{"field": "app_version", "min": "1' + "0" * 100 + '"}]', "version"),
    ],
    ids=["lone surrogate", "NUL", "1000 characters", "101-character version"],
)
def test_targeting_that_cannot_be_stored_is_refused_and_targeting_still_reads(
    live_server: LiveServer, app_a: AppCreatedPublic, rules: str, fragment: str
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
    body = b'{"rules": ' + rules.encode() + b"}"
    with live_server.http(app_a.admin_token) as http:
        response = http.put("/v1/admin/models/digits/targeting", content=body, headers=JSON)
        shown = http.get("/v1/admin/models/digits/targeting")
    _refused(response, fragment)
    assert shown.status_code == 200 and shown.json()["rules"] == []
    _checkin_works(live_server, app_a.device_key)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ('"targeting": [{"field": "country", "in": ["\\udfff"]}]', "not valid JSON"),
        ('"targeting": [{"field": "country", "in": ["\\u0000"]}]', "NUL"),
        ('"guardrails": {"thresholds": {"error_rate": 18446744073709551615}}', "64 bits"),
        ('"guardrails": {"thresholds": {"error_rate": 1' + "0" * 400 + "}}", "not valid JSON"),
        ('"guardrails": {"thresholds": {"error_rate": 1e400}}', "not valid JSON"),
    ],
    ids=["lone surrogate", "NUL", "2^64 - 1 threshold", "401-digit threshold", "1e400"],
)
def test_a_rollout_that_cannot_be_stored_is_refused_and_the_list_still_reads(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, extra: str, fragment: str
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        push_two_variants(client, "digits", tmp_path)
    body = ('{"model": "digits", "version": 1, ' + extra + "}").encode()
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/rollouts", content=body, headers=JSON)
        listed = http.get("/v1/admin/rollouts")
        audit = http.get("/v1/admin/audit")
    _refused(response, fragment)
    assert listed.status_code == 200 and listed.json()["items"] == []
    assert audit.status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/models/a%00b",
        "/v1/admin/models/a%00b/versions",
        "/v1/admin/models/a%00b/targeting",
        "/v1/admin/models?prefix=a%00",
        "/v1/admin/rollouts/r%00",
        "/v1/admin/experiments/e%00",
        "/v1/admin/audit?subject=%00",
        "/v1/admin/models/" + "x" * 65,
    ],
)
def test_a_path_or_query_value_with_a_nul_answers_422(
    live_server: LiveServer, app_a: AppCreatedPublic, path: str
) -> None:
    with live_server.http(app_a.admin_token) as http:
        response = http.get(path)
    _refused(response)
    assert response.status_code == 422


def test_device_routes_refuse_nul_keys_and_packages(
    live_server: LiveServer, app_a: AppCreatedPublic
) -> None:
    with live_server.http(app_a.device_key) as http:
        key = http.get("/v1/keys/aes%00")
        package = http.get("/v1/packages/a%00")
    assert key.status_code == 422 and package.status_code == 422


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=0-" + "9" * 30,
        "bytes=" + "0-1," * 2000,
    ],
    ids=["5000-digit start", "5000-digit suffix", "30-digit end", "2000 ranges"],
)
def test_a_range_header_with_absurd_numbers_answers_416(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, header: str
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        version = push_two_variants(client, "digits", tmp_path)
    package_id = version.variants[0].package_id  # type: ignore[attr-defined]
    with live_server.http(app_a.device_key) as http:
        response = http.get(f"/v1/packages/{package_id}", headers={"Range": header})
    assert response.status_code == 416, response.text
    assert response.json()["error"]["code"] == "range_not_satisfiable"


@pytest.mark.parametrize(
    ("fmt", "content", "fragment"),
    [
        ("onnx", b"this is not a model" * 10, "does not load in ONNX Runtime"),
        ("ort", b"\x08\x01 still not a model", "does not load in ONNX Runtime"),
        ("tflite", b"\x1c\x00\x00\x00XXXX flatbuffer?", "TFL3"),
        ("coreml", b"PK not really a zip", "mlpackage"),
    ],
)
def test_a_file_that_is_not_its_format_answers_422_naming_the_variant(
    live_server: LiveServer, app_a: AppCreatedPublic, fmt: str, content: bytes, fragment: str
) -> None:
    meta = {"variants": [{"name": f"v-{fmt}", "format": fmt, "precision": "fp32"}]}
    files = {"metadata": (None, orjson.dumps(meta)), f"v-{fmt}": ("m", content)}
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
    with live_server.http(app_a.admin_token) as http:
        response = http.post("/v1/admin/models/digits/versions", files=files)
        versions = http.get("/v1/admin/models/digits/versions")
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert f"v-{fmt}" in response.json()["error"]["message"]
    assert fragment in response.json()["error"]["message"]
    assert versions.json()["total"] == 0


@pytest.mark.parametrize(
    ("metrics", "status"),
    [
        (b'{"accuracy": NaN}', 400),
        (b'{"accuracy": Infinity}', 400),
        (b'{"accuracy": 1e400}', 400),
        (b'{"steps": 18446744073709551615}', 422),
        (b'{"note": "a\\u0000b"}', 422),
        (b'{"deep": ' + b"[" * 40 + b"]" * 40 + b"}", 422),
    ],
    ids=["NaN", "Infinity", "1e400", "2^64 - 1", "NUL", "40 levels"],
)
def test_push_metadata_that_cannot_round_trip_is_refused(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path, metrics: bytes, status: int
) -> None:
    from pocketml.testing import write_model_file

    from .conftest import sha256_of

    model = write_model_file(tmp_path / "m.onnx", "onnx", seed=1, size=3000)
    variant = {"name": "v", "format": "onnx", "precision": "fp32", "sha256": sha256_of(model)}
    meta = b'{"metrics": ' + metrics + b', "variants": [' + orjson.dumps(variant) + b"]}"
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
    with live_server.http(app_a.admin_token) as http:
        response = http.post(
            "/v1/admin/models/digits/versions",
            files={"metadata": (None, meta), "v": ("m.onnx", model.read_bytes())},
        )
        versions = http.get("/v1/admin/models/digits/versions")
    assert response.status_code == status, response.text
    assert versions.status_code == 200 and versions.json()["total"] == 0


def _event(**fields: Any) -> dict[str, Any]:
    return {
        "type": "inference",
        "ts": 1.0,
        "model": "digits",
        "variant": None,
        "source": "local",
        "latency_ms": 1.0,
        "confidence": 0.5,
        "label": "1",
        "prediction_id": "p-1",
        **fields,
    }


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (_event(version=2**63), "version"),
        (_event(version=2**31), "version"),
        (_event(prediction_id="a\0b"), "prediction_id"),
        (_event(label="\0"), "label"),
        (
            {
                "type": "download",
                "ts": 1.0,
                "model": "digits",
                "variant": "v",
                "bytes": 2**63,
                "duration_ms": 1.0,
                "outcome": "done",
            },
            "bytes",
        ),
    ],
    ids=["version 2^63", "version 2^31", "NUL prediction id", "NUL label", "bytes 2^63"],
)
def test_telemetry_beyond_the_bounds_answers_422_on_both_paths(
    live_server: LiveServer, app_a: AppCreatedPublic, event: dict[str, Any], fragment: str
) -> None:
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)  # telemetry of unknown models is left out
    body = {"batch_id": "batch-0001", "device_id": "device-0001", "events": [event]}
    with live_server.http(app_a.device_key) as http:
        response = http.post("/v1/telemetry", json=body)
        again = http.post("/v1/telemetry", json={**body, "events": [_event()]})
    _refused(response, fragment)
    assert response.status_code == 422
    assert again.status_code == 202, again.text  # nothing of the refused batch was stored


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'"version": 1' + b"0" * 24, 422),
        (b'"version": 18446744073709551615', 422),
        (b'"version": 1' + b"0" * 400, 400),
        (b'"prediction_id": "\\udc00"', 400),
        (b'"label": "\\u0000"', 422),
    ],
    ids=["25 digits", "2^64 - 1", "400 digits", "lone surrogate", "NUL label"],
)
def test_feedback_beyond_the_bounds_is_refused(
    live_server: LiveServer, app_a: AppCreatedPublic, raw: bytes, status: int
) -> None:
    base = {"prediction_id": "p-1", "device_id": "device-0001", "model": "digits", "ts": 1.0}
    if b"label" not in raw:
        base["label"] = "1"
    body = orjson.dumps(base)[:-1] + b", " + raw + b"}"
    with live_server.http(app_a.device_key) as http:
        response = http.post("/v1/feedback", content=body, headers=JSON)
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    "raw",
    [
        b'"models": {"digits": {"version": 1' + b"0" * 400 + b"}}",
        b'"models": {"digits": {"version": 18446744073709551615}}',
        b'"device_model": "\\ud800"',
        b'"device_model": "a\\u0000"',
        b'"models": ' + b"{" * 2000,
    ],
    ids=["400 digits", "2^64 - 1", "lone surrogate", "NUL", "deep nesting"],
)
def test_checkin_beyond_the_bounds_is_refused_and_the_next_checkin_works(
    live_server: LiveServer, app_a: AppCreatedPublic, raw: bytes
) -> None:
    body = orjson.dumps(CHECKIN)[:-1] + b", " + raw + b"}"
    with live_server.http(app_a.device_key) as http:
        response = http.post("/v1/checkin", content=body, headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    _checkin_works(live_server, app_a.device_key)
