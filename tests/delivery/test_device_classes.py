"""Device classes are open: an app's own profile name checks in and reports telemetry.

A class no variant was built for gets the general variant choice (exactly what a device
without a class gets); telemetry groups its metrics under its own name; a name outside
``pocketml.protocol.DEVICE_CLASS_PATTERN`` is a 422 naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketml.testing import AppKeys, LiveServer, model_variant


def facts(**overrides: Any) -> dict[str, Any]:
    body = {
        "device_id": "device-0001",
        "platform": "android",
        "os_version": "14",
        "app_version": "2.3.1",
        "formats": ["tflite", "onnx"],
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def _chosen(server: LiveServer, app: AppKeys, **overrides: Any) -> Any:
    with server.http(app.device_key) as http:
        response = http.post("/v1/checkin", json=facts(**overrides))
    assert response.status_code == 200, response.text
    return response.json()["models"][0]["variant"]


def test_an_app_defined_class_gets_the_general_variant_and_its_own_metrics(
    server: LiveServer, app_keys: AppKeys, tmp_path: Path
) -> None:
    version = server.push(
        app_keys,
        "digits",
        [
            model_variant(tmp_path, "general-tflite-fp32", fmt="tflite", size=3000),
            model_variant(
                tmp_path,
                "low-tflite-int8",
                fmt="tflite",
                precision="int8",
                size=1000,
                profiles=["android-low"],
            ),
        ],
    )

    assert _chosen(server, app_keys, device_class="android-low") == "low-tflite-int8"
    general = _chosen(server, app_keys, device_class=None)
    assert general == "general-tflite-fp32"
    assert _chosen(server, app_keys, device_class="kiosk-v2.arm64") == general

    event = {
        "type": "inference",
        "ts": 1795240000.0,
        "model": "digits",
        "version": version.version,
        "variant": general,
        "source": "local",
        "latency_ms": 3.0,
        "confidence": 0.9,
        "label": "7",
        "prediction_id": "p-1",
    }
    batch = {
        "batch_id": "b-kiosk-000001",
        "device_id": "device-0001",
        "device": {"platform": "android", "device_class": "kiosk-v2.arm64"},
        "events": [event],
    }
    with server.http(app_keys.device_key) as http:
        stored = http.post("/v1/telemetry", json=batch)
        refused = http.post("/v1/checkin", json=facts(device_class="Kiosk V2"))
    with server.http(app_keys.admin_token) as http:
        groups = http.get("/v1/admin/models/digits/metrics").json()["groups"]

    assert stored.status_code == 202, stored.text
    assert [(g["device_class"], g["count"]) for g in groups] == [("kiosk-v2.arm64", 1)]
    assert refused.status_code == 422
    assert "device_class" in refused.json()["error"]["message"]
