"""The Python device SDK against the language-neutral conformance vectors (``conformance/``).

The TypeScript SDK runs the same files (``clients/typescript/test/``); a Kotlin or Swift
client can too (``conformance/README.md``). Package and keyring vectors run offline; the
server scenario runs against a real server (the ``live_server`` fixture, on SQLite and on
PostgreSQL) prepared by ``conformance/serve.py``, the same code that serves other runners.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest

from pocketml.device import Device, DeviceFacts
from pocketml.errors import PocketMLError
from pocketml.protect import Keyring, canonical_json, extract_model, follow_keyrings, verify
from pocketml.schema import ModelSchema
from pocketml.testing import LiveServer

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "conformance"


def _load(name: str) -> ModuleType:
    """A script of ``conformance/`` as a module (that folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"conformance_{name}", VECTORS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vectors(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


PACKAGES = _vectors("packages.json")["vectors"]
KEYRINGS = _vectors("keyrings.json")["vectors"]
PREDICTIONS = _vectors("predictions.json")
SCENARIO = _vectors("server.json")
CANONICAL = _vectors("canonical.json")["vectors"]


def test_checked_in_vectors_are_what_the_generator_writes() -> None:
    # As a program: the generator imports its sibling modules from its own folder.
    check = subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    stale = check.stdout + check.stderr
    assert check.returncode == 0, f"run python conformance/generate.py:\n{stale}"


@pytest.mark.parametrize("vector", PACKAGES, ids=[v["name"] for v in PACKAGES])
def test_package_vector(vector: dict[str, Any], tmp_path: Path) -> None:
    path = VECTORS / vector["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == vector["sha256"]
    trusted = {k: base64.b64decode(v) for k, v in vector["trusted_keys"].items()}
    key = vector["content_key"]
    out = tmp_path / "model.onnx"

    def run() -> dict[str, Any]:
        package = verify(path, trusted_keys=trusted, app_id=vector["app_id"])
        extract_model(package, out, content_key=key and base64.b64decode(key))
        return {
            "ok": True,
            "signing_key_id": package.signing_key_id,
            "model_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "manifest": {k: package.manifest[k] for k in vector["expect"]["manifest"]}
            if vector["expect"]["ok"]
            else {},
        }

    outcome = _outcome(run)
    assert outcome == vector["expect"]
    assert outcome["ok"] or not out.exists(), "a refused package left a model file behind"


def _outcome(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """What ``run`` returned, or the vector form of the pocketml error it raised."""
    try:
        return run()
    except PocketMLError as exc:
        return {"ok": False, "error": exc.code}


def _pin(pinned: Any) -> Keyring | dict[str, bytes] | None:
    if pinned is None or "sequence" in pinned:
        return None if pinned is None else Keyring.from_dict(pinned)
    return {k: base64.b64decode(v) for k, v in pinned.items()}


@pytest.mark.parametrize("vector", KEYRINGS, ids=[v["name"] for v in KEYRINGS])
def test_keyring_vector(vector: dict[str, Any]) -> None:
    def run() -> dict[str, Any]:
        ring = follow_keyrings(
            _pin(vector["pinned"]), vector["offered"], vector["chain"], app_id=vector["app_id"]
        )
        return {"ok": True, "sequence": ring.sequence, "trusted_keys": sorted(ring.trusted_keys())}

    assert _outcome(run) == vector["expect"]


@pytest.mark.parametrize("vector", CANONICAL, ids=[str(i) for i in range(len(CANONICAL))])
def test_canonical_json_vector(vector: dict[str, str]) -> None:
    assert canonical_json(json.loads(vector["json"])).decode("ascii") == vector["canonical"]


def test_schema_normalization_vector() -> None:
    schema = ModelSchema.from_dict(PREDICTIONS["schema"])
    for case in PREDICTIONS["cases"]:
        normalized = schema.normalize(np.asarray([case["raw"]], dtype=np.float32))[0]
        np.testing.assert_allclose(normalized, case["normalized"], atol=PREDICTIONS["tolerance"])


# -- the server scenario -------------------------------------------------------------------


@pytest.fixture
def world(live_server: LiveServer) -> dict[str, Any]:
    return dict(_load("serve").prepare(live_server))


def _facts(device_id: str | None = None) -> DeviceFacts:
    """The scenario's device (server.json), optionally under another id."""
    facts = SCENARIO["device"]
    return DeviceFacts(
        platform=facts["platform"],
        os_version=facts["os_version"],
        app_version=facts["app_version"],
        formats=tuple(facts["formats"]),
        device_id=device_id or facts["device_id"],
    )


def _device(world: dict[str, Any], cache: Path) -> Device:
    return Device(world["url"], world["device_key"], _facts(), cache, seed=0)


def test_checkin_etag_then_304(world: dict[str, Any]) -> None:
    body = {**SCENARIO["device"], "models": {}}
    headers = {"Authorization": f"Bearer {world['device_key']}"}
    with httpx.Client(base_url=world["url"], headers=headers) as http:
        first = http.post("/v1/checkin", json=body)
        etag = first.headers["etag"]
        again = http.post("/v1/checkin", json=body, headers={"If-None-Match": etag})
    assert first.status_code == 200
    assert first.headers["etag"] == f'"{hashlib.sha256(first.content).hexdigest()}"'
    assert (again.status_code, again.content) == (304, b"")


def test_install_then_not_modified(world: dict[str, Any], tmp_path: Path) -> None:
    with _device(world, tmp_path / "cache") as device:
        first = device.sync()
        second = device.sync()
    for model in SCENARIO["models"]:
        synced = first.models[model["name"]]
        assert synced.status == "updated", synced.error
        assert synced.bytes_downloaded == world["models"][model["name"]]["package_size"]
    assert second.not_modified
    assert all(m.bytes_downloaded == 0 for m in second.models.values())


def test_resume_fetches_only_the_missing_half(world: dict[str, Any], tmp_path: Path) -> None:
    model = SCENARIO["models"][0]["name"]
    ref = world["models"][model]
    with httpx.Client(base_url=world["url"]) as http:
        whole = http.get(ref["package_url"]).content
        half = len(whole) // 2
        tail = http.get(ref["package_url"], headers={"Range": f"bytes={half}-"})
    assert tail.status_code == 206
    assert tail.headers["content-range"] == f"bytes {half}-{len(whole) - 1}/{len(whole)}"
    partial = tmp_path / "cache" / "partial" / f"{ref['package_id']}.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(whole[:half])  # the app was killed at 50 %
    with _device(world, tmp_path / "cache") as device:
        report = device.sync()
    assert report.models[model].status == "updated", report.models[model].error
    assert (report.models[model].bytes_downloaded, report.models[model].resumed) == (
        len(whole) - half,
        True,
    )


def _expected_source(model: dict[str, Any], case: dict[str, Any]) -> str:
    """``cloud`` for a cascade model's case below its threshold, else ``local``."""
    hybrid = model.get("policy", {}).get("hybrid", {})
    is_escalated = hybrid.get("mode") == "cascade" and case["confidence"] < hybrid["threshold"]
    return "cloud" if is_escalated else "local"


def test_predictions_feedback_and_telemetry(world: dict[str, Any], tmp_path: Path) -> None:
    tolerance = PREDICTIONS["tolerance"]
    sources = []
    with _device(world, tmp_path / "cache") as device:
        assert device.sync().is_ok
        for model in SCENARIO["models"]:
            for case in PREDICTIONS["cases"]:
                prediction = device.model(model["name"]).predict(case["raw"])
                sources.append(prediction.source)
                assert prediction.source == _expected_source(model, case)
                assert (prediction.label, prediction.class_index) == (case["label"], case["index"])
                assert prediction.version == 1
                np.testing.assert_allclose(
                    prediction.probabilities, case["probabilities"], atol=tolerance
                )
        delivered = device.feedback(prediction.prediction_id, label=case["label"])
        first = device.flush()
        second = device.flush()
    assert "cloud" in sources and "local" in sources  # both paths of the cascade were taken
    assert delivered == "sent"
    # one inference event per prediction, one download event per installed package
    expected = len(SCENARIO["models"]) * (len(PREDICTIONS["cases"]) + 1)
    assert (first.sent, first.pending, second.sent) == (expected, 0, 0)


def test_typescript_error_codes_are_generated_from_the_catalog() -> None:
    script = ROOT / "clients" / "typescript" / "scripts" / "generate_errors.py"
    spec = importlib.util.spec_from_file_location("generate_errors", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    current = module.TARGET.read_text(encoding="utf-8")
    assert current == module.render(), "run python clients/typescript/scripts/generate_errors.py"
    assert '  package_untrusted_key: {"name": "UntrustedKey"' in current


# -- the capture case (consented samples) ----------------------------------------------------------


def _capture_case() -> dict[str, Any]:
    return next(c for c in SCENARIO["cases"] if c["name"] == "capture")


def _stored_samples(world: dict[str, Any], model: str, device_id: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {world['admin_token']}"}
    with httpx.Client(base_url=world["url"], headers=headers) as http:
        answer = http.get(f"/v1/admin/models/{model}/samples", params={"device_id": device_id})
    answer.raise_for_status()
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def test_capture_sends_consented_samples_then_forget_me_deletes_them(
    world: dict[str, Any], tmp_path: Path
) -> None:
    case = _capture_case()
    device = Device(
        world["url"], world["device_key"], _facts(case["device_id"]), tmp_path / "cache", seed=0
    )
    with device:
        assert device.sync().is_ok
        device.set_consent(True)
        predicted = {}
        for case_raw in PREDICTIONS["cases"]:
            p = device.model(case["model"]).predict(case_raw["raw"])
            predicted[p.prediction_id] = p.label
        labelled = list(predicted)[case["feedback"]["case"]]
        device.feedback(labelled, label=case["feedback"]["label"])
        flushed = device.flush()
        stored = _stored_samples(world, case["model"], case["device_id"])
        forgotten = device.forget_me()
        after = _stored_samples(world, case["model"], case["device_id"])
        pending = device.capture.pending()
    assert flushed.samples is not None and flushed.samples.sent == len(PREDICTIONS["cases"])
    assert {s["prediction_id"]: s["predicted"] for s in stored} == predicted
    labels = {s["prediction_id"]: s["label"] for s in stored}
    assert labels == {
        pid: case["feedback"]["label"] if pid == labelled else None for pid in predicted
    }
    assert (forgotten.queued, after, pending) == (False, [], 0)


# -- profile sketches: the profile-sketch server case (conformance/_sketches.py) -----------


def test_profile_sketch_reaches_the_server_as_one_window_of_the_expected_counts(
    live_server: LiveServer, tmp_path: Path
) -> None:
    sketch, expect = _load("serve").prepare_sketch(live_server), SCENARIO["sketch"]["expect"]
    model = SCENARIO["sketch"]["model"]["name"]
    with Device(
        live_server.url,
        sketch["device_key"],
        _facts(),
        tmp_path / "cache",
        seed=0,
        clock=lambda: 0.0,  # every input is stamped with the snapshot's wall time: one window
    ) as device:
        assert device.sync().is_ok
        for case in PREDICTIONS["cases"]:
            device.model(model).predict(case["raw"])
        first = device.flush()
    with live_server.http(sketch["admin_token"]) as admin:
        answer = admin.get(f"/v1/admin/models/{model}/drift", params={"group_by": ""})
    answer.raise_for_status()
    fleet = answer.json()["fleet"]
    blocks = [*fleet["features"], *fleet["multivariate"], fleet["prediction"], fleet["confidence"]]
    # the inferences, one download, and the profile events
    assert first.sent == len(PREDICTIONS["cases"]) + 1 + expect["events"]
    assert (fleet["events"], fleet["n"]) == (expect["events"], expect["n"])
    assert {b["name"]: b["histogram"]["current"] for b in blocks} == expect["counts"]
