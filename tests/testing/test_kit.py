"""The test kit users get: the live-server fixture, the push kit and its schema."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

import pocketml.testing
from pocketml.testing import (
    DIGITS_SCHEMA,
    AppKeys,
    LiveServer,
    model_variant,
    push_version,
)


def test_the_live_server_fixture_serves_the_app_with_the_operator_token(
    live_server: LiveServer,
) -> None:
    with live_server.http(live_server.operator_token) as http:
        response = http.get("/v1/admin/apps")
    assert live_server.url.startswith("http://127.0.0.1:")
    assert response.status_code == 200
    assert httpx.get(f"{live_server.url}/v1/admin/apps").status_code == 401


def test_a_variant_entry_names_its_file_by_sha256(tmp_path: Path) -> None:
    entry, path = model_variant(tmp_path, "small-tflite", fmt="tflite", role="device")
    assert entry == {
        "name": "small-tflite",
        "format": "tflite",
        "precision": "fp32",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "role": "device",
    }
    assert model_variant(tmp_path, "other")[0]["sha256"] != entry["sha256"]


def test_a_push_creates_the_model_and_sets_the_stage(
    live_server: LiveServer, pocketml_app: AppKeys, tmp_path: Path
) -> None:
    variant = model_variant(tmp_path, "onnx-fp32")
    with live_server.admin(pocketml_app.admin_token) as client:
        version = push_version(
            client, "digits", [variant], schema=DIGITS_SCHEMA, stage="production", card="# d"
        )
        model = client.show_model("digits")
    assert (version.version, version.stage) == (1, "production")
    assert [v.sha256 for v in version.variants] == [variant[0]["sha256"]]
    assert model.production_version == 1


def test_the_server_side_names_load_on_first_use() -> None:
    assert set(pocketml.testing.__all__) >= {"live_server", "check_quantizer", "write_model_file"}
    assert pocketml.testing.live_server.__module__ == "pocketml.testing._server"
