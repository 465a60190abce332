"""POST /v1/checkin, the policies and GET /v1/keys on a live server (SQLite + PostgreSQL).

Every test works in an app of its own, so the module shares one server per database
(tests/shared_server.py) instead of starting one per test.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from pocketml.protect import extract_model, verify_package
from pocketml.testing import OPERATOR_TOKEN, AppKeys, LiveServer, model_variant
from shared_server import shared_server_fixture, unique_app_name

server = shared_server_fixture(devices={"catalog_ttl_s": 0})


def facts(**overrides: Any) -> dict[str, Any]:
    body = {
        "device_id": "device-0001",
        "platform": "android",
        "os_version": "14",
        "app_version": "2.3.1",
        "device_model": "Pixel 7",
        "device_class": "android-mid",
        "formats": ["tflite", "onnx"],
        "runtimes": {"onnxruntime": "1.20.0", "litert": "1.2.0"},
        "country": "DE",
    }
    body.update(overrides)
    return body


def push_digits(server: LiveServer, app: AppKeys, work: Path, **extra: Any) -> Any:
    return server.push(
        app,
        "digits",
        [
            model_variant(work, "small-tflite-fp32", fmt="tflite"),
            model_variant(work, "small-onnx-fp32", fmt="onnx"),
            model_variant(work, "large-onnx-fp32", fmt="onnx", role="cloud", size=5000),
        ],
        **extra,
    )


def test_a_device_gets_the_variant_for_its_formats_with_package_and_policies(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    version = push_digits(server, app_keys, tmp_path)
    with server.http(app_keys.device_key) as http:
        response = http.post("/v1/checkin", json=facts())
        manifest = response.json()
        package = http.get(manifest["models"][0]["package"]["url"])
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert manifest["app_id"] == app_keys.app_id
    assert manifest["public_keys"] == app_keys.public_keys
    (entry,) = manifest["models"]
    chosen = next(v for v in version.variants if v.name == "small-tflite-fp32")
    assert entry["variant"] == "small-tflite-fp32" and entry["version"] == version.version
    assert entry["format"] == "tflite" and entry["model_sha256"] == chosen.sha256
    assert entry["package"] == {
        "id": chosen.package_id,
        "url": f"/v1/packages/{chosen.package_id}",
        "size": chosen.package_size,
        "sha256": chosen.package_id,
        "signing_key_id": chosen.signing_key_id,
        "content_key_id": None,
    }
    assert entry["hybrid"] == {
        "mode": "cascade",
        "threshold": 0.8,
        "cloud_route": "/v1/models/digits/predict",
        "cloud_variant": "large-onnx-fp32",
        "timeout_ms": 1500,
        "max_retries": 2,
    }
    assert entry["download_policy"] == {
        "wifi_only": False,
        "charging_only": False,
        "max_cellular_bytes": 52428800,
    }
    assert hashlib.sha256(package.content).hexdigest() == chosen.package_id


def test_models_without_production_or_loadable_variant_are_listed_with_nulls(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    push_digits(server, app_keys, tmp_path / "d")
    server.push(app_keys, "draft", [model_variant(tmp_path / "x", "x-onnx")], stage=None)
    with server.http(app_keys.device_key) as http:
        manifest = http.post("/v1/checkin", json=facts(formats=["coreml"], platform="ios")).json()
    by_name = {m["name"]: m for m in manifest["models"]}
    assert by_name["digits"]["variant"] is None and by_name["digits"]["package"] is None
    assert by_name["digits"]["hybrid"]["cloud_variant"] == "large-onnx-fp32"
    # without a package the schema still tells the device how to prepare cloud inputs
    assert by_name["digits"]["schema"]["inputs"][0]["name"]
    assert by_name["draft"]["version"] is None and by_name["draft"]["package"] is None
    assert by_name["draft"]["hybrid"]["mode"] == "local"


def test_an_unchanged_manifest_costs_a_304_and_a_promotion_changes_it(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    push_digits(server, app_keys, tmp_path / "v1")
    with server.http(app_keys.device_key) as http:
        first = http.post("/v1/checkin", json=facts())
        etag = first.headers["etag"]
        again = http.post("/v1/checkin", json=facts(), headers={"If-None-Match": etag})
        push_digits(server, app_keys, tmp_path / "v2", force=True)  # the same files
        changed = http.post("/v1/checkin", json=facts(), headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["models"][0]["version"] == first.json()["models"][0]["version"] + 1


def test_devices_with_different_facts_get_their_own_etag(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    push_digits(server, app_keys, tmp_path)
    with server.http(app_keys.device_key) as http:
        tflite = http.post("/v1/checkin", json=facts())
        onnx = http.post("/v1/checkin", json=facts(formats=["onnx"], device_id="device-0002"))
        same = http.post("/v1/checkin", json=facts(device_id="device-0003"))
    assert onnx.json()["models"][0]["variant"] == "small-onnx-fp32"
    assert tflite.headers["etag"] != onnx.headers["etag"]
    assert same.headers["etag"] == tflite.headers["etag"]


BAD_FACTS = [
    ({"formats": []}, "formats"),
    ({"formats": ["tflite", "exe"]}, "formats"),
    ({"platform": "windows"}, "platform"),
    ({"device_id": "short"}, "device_id"),
    ({"runtimes": {"onnxruntime": "latest"}}, "runtimes"),
    ({"country": "Germany"}, "country"),
    ({"surprise": 1}, "surprise"),
]


def test_bad_device_facts_answer_422_naming_the_field(
    server: LiveServer, app_keys: AppKeys
) -> None:
    with server.http(app_keys.device_key) as http:
        answers = [(http.post("/v1/checkin", json=facts(**change)), f) for change, f in BAD_FACTS]
    for response, field in answers:
        assert response.status_code == 422, field
        assert field in response.json()["error"]["message"]


def test_an_unknown_device_key_is_401_and_the_operator_token_403(server: LiveServer) -> None:
    with server.http("pml_dev_not-a-key") as http:
        unknown = http.post("/v1/checkin", json=facts())
    with server.http(OPERATOR_TOKEN) as http:
        operator = http.post("/v1/checkin", json=facts())
    with server.http() as http:
        anonymous = http.post("/v1/checkin", json=facts())
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "unauthorized"
    assert operator.status_code == 403
    assert anonymous.status_code == 401


def test_a_policy_change_reaches_the_manifest_and_is_validated(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    version = push_digits(server, app_keys, tmp_path)
    route = f"/v1/admin/models/digits/versions/{version.version}/policy"
    body = {"hybrid": {"mode": "cloud", "threshold": 0.6}, "download": {"wifi_only": True}}
    with server.http(app_keys.admin_token) as admin, server.http(app_keys.device_key) as dev:
        default = admin.get(route).json()
        stored = admin.put(route, json=body)
        bad = admin.put(route, json={"hybrid": {"threshold": 1.5}})
        bad_mode = admin.put(route, json={"hybrid": {"mode": "sometimes"}})
        by_device = dev.put(route, json=body)
        entry = dev.post("/v1/checkin", json=facts()).json()["models"][0]
    assert default["hybrid"]["mode"] == "cascade"
    assert stored.status_code == 200 and stored.json()["hybrid"]["threshold"] == 0.6
    assert entry["hybrid"]["mode"] == "cloud" and entry["hybrid"]["threshold"] == 0.6
    assert entry["hybrid"]["timeout_ms"] == 1500  # untouched fields keep their default
    assert entry["download_policy"]["wifi_only"] is True
    assert bad.status_code == 422 and "threshold" in bad.json()["error"]["message"]
    assert bad_mode.status_code == 422
    assert by_device.status_code == 403


def test_content_keys_decrypt_the_package_and_stay_inside_their_app(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    other = server.create_app(unique_app_name("app-b"))
    meta, path = model_variant(tmp_path, "secret-tflite", fmt="tflite", encrypt=True)
    server.push(app_keys, "digits", [(meta, path)])
    with server.http(app_keys.device_key) as http:
        entry = http.post("/v1/checkin", json=facts()).json()["models"][0]
        key_id = entry["package"]["content_key_id"]
        key = http.get(f"/v1/keys/{key_id}")
        package = http.get(entry["package"]["url"]).content
    with server.http(other.device_key) as http:
        foreign = http.get(f"/v1/keys/{key_id}")
    assert key.status_code == 200 and key.headers["cache-control"] == "no-store"
    assert key.json()["algorithm"] == "AES-256-GCM" and key.json()["key_id"] == key_id
    assert foreign.status_code == 404
    (tmp_path / "p.pkg").write_bytes(package)
    trusted = {k: base64.b64decode(v) for k, v in app_keys.public_keys.items()}
    verified = verify_package(tmp_path / "p.pkg", trusted_keys=trusted, app_id=app_keys.app_id)
    out = extract_model(
        verified, tmp_path / "m.bin", content_key=base64.b64decode(key.json()["key"])
    )
    assert out.read_bytes() == path.read_bytes()
