"""The Python device SDK against the network-fault scripts of ``conformance/faults.json``.

The faults (a tampered or untrusted package from the server, a cut or oversize download, a
cloud that answers 503 or garbage) are served by a scripted ``httpx.MockTransport``, the one
place where a fake belongs: a real server does not produce them on demand. The packages are
the conformance vectors' real bytes; verification, the cache and ONNX Runtime are real.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pocketml.device import Device, DeviceFacts
from pocketml.errors import PocketMLError

VECTORS = Path(__file__).resolve().parents[2] / "conformance"
FAULTS = json.loads((VECTORS / "faults.json").read_text(encoding="utf-8"))
PREDICTIONS = json.loads((VECTORS / "predictions.json").read_text(encoding="utf-8"))


class _Cut(httpx.SyncByteStream):
    """A body that breaks after its bytes, as a dropped connection does."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        raise httpx.ReadError("connection reset by the script")


class ScriptedServer:
    """Answers check-in, package, predict and telemetry requests as the current step says."""

    def __init__(self) -> None:
        self.sync: dict[str, Any] = {}
        self.checkin: dict[str, Any] | None = None
        self.cloud: dict[str, Any] = {"status": 503}
        self.cloud_calls = 0

    def manifest(self) -> dict[str, Any]:
        entry = json.loads(json.dumps(FAULTS["entry"]))
        sha, size = self.sync["sha256"], self.sync["size"]
        entry["package"].update(
            {"id": sha, "sha256": sha, "size": size, "url": f"/v1/packages/{sha}"}
        )
        entry["hybrid"].update(self.sync.get("hybrid", {}))
        return {
            "app_id": FAULTS["app_id"],
            "checkin_interval_s": 3600,
            "keyring": FAULTS["keyring"],
            "keyring_chain": [],
            "models": [entry],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/checkin":
            if self.checkin is not None:
                return httpx.Response(self.checkin["status"], text=self.checkin["body"])
            return httpx.Response(200, json=self.manifest())
        if path.startswith("/v1/packages/"):
            return self._package(request)
        if path.endswith("/predict"):
            self.cloud_calls += 1
            return httpx.Response(self.cloud["status"], text=self.cloud.get("body", "{}"))
        return httpx.Response(202, json={"accepted": 0, "duplicate": False, "rejected": []})

    def _package(self, request: httpx.Request) -> httpx.Response:
        data = (VECTORS / self.sync["package"]).read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", ""))
        start = int(match.group(1)) if match else 0
        body = data[start:]
        headers = {"Content-Length": str(len(body) + self.sync.get("extra_content_length", 0))}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        status = 206 if start else 200
        cut = self.sync.get("cut_at")
        if cut is not None and start < cut:
            return httpx.Response(status, headers=headers, stream=_Cut(body[: cut - start]))
        return httpx.Response(status, headers=headers, content=body)


def _check_sync(device: Device, server: ScriptedServer, step: dict[str, Any]) -> None:
    server.sync = step["sync"]
    server.checkin = step.get("checkin")
    if "raises" in step["expect"]:
        with pytest.raises(PocketMLError) as raised:
            device.sync()
        assert raised.value.code == step["expect"]["raises"]
        return
    synced = device.sync().models[FAULTS["entry"]["name"]]
    expect = step["expect"]
    got = {
        "status": synced.status,
        "error": None if synced.error is None else synced.error.code,
        "bytes_downloaded": synced.bytes_downloaded,
        "resumed": synced.resumed,
    }
    assert {k: got[k] for k in expect} == expect, synced.error


def _check_predict(device: Device, server: ScriptedServer, step: dict[str, Any]) -> None:
    server.cloud = step.get("cloud", server.cloud)
    server.cloud_calls = 0
    case = PREDICTIONS["cases"][step["predict"]]
    prediction = device.model(FAULTS["entry"]["name"]).predict(case["raw"])
    got = {"source": prediction.source, "cloud_calls": server.cloud_calls}
    assert prediction.label == case["label"]
    assert {k: got[k] for k in step["expect"]} == step["expect"]


@pytest.mark.parametrize("script", FAULTS["scripts"], ids=[s["name"] for s in FAULTS["scripts"]])
def test_fault_script(script: dict[str, Any], tmp_path: Path) -> None:
    server = ScriptedServer()
    facts = FAULTS["device"]
    device = Device(
        "http://pocketml.test",
        "pml_dev_conformance",
        DeviceFacts(
            platform=facts["platform"],
            os_version=facts["os_version"],
            app_version=facts["app_version"],
            formats=tuple(facts["formats"]),
            device_id=facts["device_id"],
        ),
        tmp_path / "cache",
        transport=httpx.MockTransport(server),
        sleep=lambda _seconds: None,
        download_retries=0,
        seed=0,
    )
    with device:
        for step in script["steps"]:
            if "sync" in step:
                _check_sync(device, server, step)
            else:
                _check_predict(device, server, step)
