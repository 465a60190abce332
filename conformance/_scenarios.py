"""Predictions, canonical JSON, the server scenario and the fault scripts (see generate.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from _sketches import sketch_world
from _world import (
    APP_ID,
    CASCADE_THRESHOLD,
    KEY_A,
    MODEL,
    RAW_INPUTS,
    SCHEMA,
    VARIANT,
    keyring,
)  # fmt: skip

from pocketml.protect import canonical_json
from pocketml.schema import ModelSchema

# -- predictions ------------------------------------------------------------------------------


def prediction_vectors(model_file: Path) -> dict[str, Any]:
    import onnxruntime as ort

    schema = ModelSchema.from_dict(SCHEMA)
    raw = np.asarray(RAW_INPUTS, dtype=np.float32)
    normalized = schema.normalize(raw)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"x": normalized})[0]
    labels = SCHEMA["outputs"][0]["labels"]
    cases = []
    for i in range(len(raw)):
        index = int(np.argmax(probs[i]))
        cases.append(
            {
                "raw": [float(v) for v in raw[i]],
                "normalized": [float(v) for v in normalized[i]],
                "probabilities": [float(v) for v in probs[i]],
                "index": index,
                "label": labels[index],
                "confidence": float(probs[i][index]),
            }
        )
    return {"model": "model/logreg.onnx", "schema": SCHEMA, "tolerance": 1e-5, "cases": cases}


# -- canonical JSON -----------------------------------------------------------------------------


def canonical_vectors() -> list[dict[str, Any]]:
    """JSON texts and their canonical form (what a manifest's signed bytes must be).

    A client that re-serialises to check a manifest must spell numbers and strings exactly
    as Python's ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)``.
    """
    values: list[Any] = [
        {"b": 1, "a": [1.0, 0.1, 1e-4, 1e-5, 1e16, 1.5e16, 123456789.125, -0.0, 2.5e-7, 1e300]},
        {"text": 'caf\u00e9 \u2603 \U0001f600 "q" \\ \n\t\x01\x7f/', "z": None, "y": True},
        {"nested": {"z": {"b": [], "a": {}}, "a": -12345678901234567890}},
        [0, -1, 3.0e-3, 5e-324, 1.7976931348623157e308],
    ]
    cases = []
    for value in values:
        text = json.dumps(value, indent=2, ensure_ascii=False)  # spaced, unsorted, UTF-8
        cases.append({"json": text, "canonical": canonical_json(json.loads(text)).decode()})
    return cases


# -- the server scenario ------------------------------------------------------------------------

# The `capture` case: the first model's version captures every prediction (rate 1, any
# network); a device that consents sends them, with the label of its feedback attached.
CAPTURE_POLICY: dict[str, Any] = {"enabled": True, "rate": 1.0, "when": "all", "wifi_only": False}
CAPTURE_CASE: dict[str, Any] = {
    "name": "capture",
    "model": MODEL,
    "device_id": "conformance-capture-0001",
    "feedback": {"case": 0, "label": SCHEMA["outputs"][0]["labels"][0]},
    "steps": "with the device facts but this case's device_id, and capture enabled in the "
    "client: sync, consent, predict every case of predictions.json with 'model', give label "
    "feedback 'feedback.label' for the prediction of case 'feedback.case', flush. GET "
    "/v1/admin/models/<model>/samples?device_id=<device_id> (admin token) lists exactly one "
    "sample per prediction (its prediction_id, predicted = the case's label), and the one of "
    "the feedback carries its label, the others none. Then forget_me: the server answers, "
    "the same list is empty and the device holds no samples.",
}


def server_scenario(model_file: Path) -> dict[str, Any]:
    """What a runner pushes to a real server, and what every client must then observe."""
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    return {
        "models": [
            {
                "name": MODEL,
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": False,
                "schema": SCHEMA,
                "model_sha256": digest,
                "policy": {"capture": CAPTURE_POLICY},  # the `capture` case (consent off elsewhere)
            },
            {
                "name": f"{MODEL}-enc",
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": True,
                "schema": {**SCHEMA, "name": f"{MODEL}-enc"},
                "model_sha256": digest,
            },
            {
                "name": f"{MODEL}-cascade",
                "variant": VARIANT,
                "format": "onnx",
                "precision": "fp32",
                "file": "model/logreg.onnx",
                "encrypt": False,
                "schema": {**SCHEMA, "name": f"{MODEL}-cascade"},
                "model_sha256": digest,
                "policy": {"hybrid": {"mode": "cascade", "threshold": CASCADE_THRESHOLD}},
            },
        ],
        "device": {
            "platform": "linux",
            "os_version": "6.1",
            "app_version": "1.0.0",
            "formats": ["onnx"],
            "device_id": "conformance-device-0001",
        },
        "cases": [
            {
                "name": "checkin-etag",
                "steps": "check in; the answer is 200 with ETag = quoted sha256 of the body; check "
                "in again with If-None-Match: <etag>; the answer is 304 with no body.",
            },
            {
                "name": "install",
                "steps": "sync: every model of 'models' is downloaded, verified with the pinned "
                "keyring of the check-in, bound to its entry, decrypted with the key "
                "from GET /v1/keys/{id} when encrypted, and active with model_sha256.",
            },
            {
                "name": "not-modified",
                "steps": "sync again: the check-in answers 304 and nothing is downloaded.",
            },
            {
                "name": "resume",
                "steps": "a fresh device whose partial download holds the first floor(size/2) "
                "bytes of the package (the app was killed at 50 %) syncs: it asks "
                "Range: bytes=<half>- and fetches exactly size - half bytes; the server "
                "answers 206 with Content-Range bytes <half>-<size-1>/<size>.",
            },
            {
                "name": "predict-local",
                "steps": "predict every case of predictions.json with the installed model: "
                "label, index and probabilities within tolerance, source 'local'.",
            },
            {
                "name": "predict-cascade",
                "steps": "predict every case with the model whose policy is cascade (threshold "
                "in its 'policy'): a case whose local confidence is below the threshold is "
                "answered by the server's cloud route (source 'cloud', version 1, the same "
                "label and probabilities within tolerance), the others locally.",
            },
            {
                "name": "feedback",
                "steps": "send label feedback for one prediction; the server accepts it (202), "
                "at once or at the next flush.",
            },
            {
                "name": "telemetry",
                "steps": "after the predictions, flush: the server accepts one inference event "
                "per prediction plus one download event per installed package; a second "
                "flush sends nothing.",
            },
            CAPTURE_CASE,
            # -- profile sketches (conformance/_sketches.py) --
            {
                "name": "profile-sketch",
                "steps": "a device of the app 'sketch.app' (serve.py pushes 'sketch.model' with "
                "its reference profile there, so its entry has a monitor policy) syncs, "
                "predicts every case of predictions.json with the wall clock pinned inside "
                "one window, then flushes: the server accepts the inference and download "
                "events plus exactly 'sketch.expect.events' profile event; the admin drift "
                "report of the version (GET /v1/admin/models/{name}/drift?group_by=) counts "
                "that many events and 'expect.n' rows, and every block's current histogram "
                "is 'expect.counts'.",
            },
        ],
        "sketch": sketch_world(model_file),
    }


# -- network-fault scripts ----------------------------------------------------------------------


def fault_scripts(out: Path, packages: list[dict[str, Any]]) -> dict[str, Any]:
    """Faults a real server will not produce on demand, as scripts over a scripted transport.

    Each step is a sync against a scripted server (the entry below with the given package
    file and overrides) or a prediction; the runner's transport serves exactly what the step
    says. Download retries are 0 (the runner configures its client so), cloud retries are the
    entry's ``max_retries``, and waits between retries are skipped.
    """
    by_file = {v["file"]: v for v in packages}
    valid = next(v for v in packages if v["name"] == "valid-plain")
    ring = keyring(1, active=KEY_A, keys=(KEY_A,), signers=(KEY_A,))

    def sync(file: str, expect: dict[str, Any], **fault: Any) -> dict[str, Any]:
        size = (out / file).stat().st_size
        return {
            "sync": {"package": file, "sha256": by_file[file]["sha256"], "size": size, **fault},
            "expect": expect,
        }

    plain = "packages/valid-plain.pkg"
    plain_size = (out / plain).stat().st_size
    half = plain_size // 2
    low = 0  # predictions.json case 0: confidence 0.73, below the cascade threshold below
    cascade = {"mode": "cascade", "threshold": CASCADE_THRESHOLD, "max_retries": 2}
    return {
        "app_id": APP_ID,
        "keyring": ring.to_dict(),
        "device": {
            "platform": "linux",
            "os_version": "6.1",
            "app_version": "1.0.0",
            "formats": ["onnx"],
            "device_id": "conformance-fault-01",
        },
        "entry": {
            "name": MODEL,
            "version": 1,
            "variant": VARIANT,
            "format": "onnx",
            "precision": "fp32",
            "model_sha256": valid["expect"]["model_sha256"],
            "package": {"signing_key_id": KEY_A.key_id, "content_key_id": None},
            "download_policy": {
                "wifi_only": False,
                "charging_only": False,
                "max_cellular_bytes": 0,
            },
            "hybrid": {
                "mode": "local",
                "threshold": 0.8,
                "cloud_route": f"/v1/models/{MODEL}/predict",
                "cloud_variant": None,
                "timeout_ms": 1000,
                "max_retries": 0,
            },
            "schema": SCHEMA,
        },
        "scripts": [
            {
                "name": "tampered-package-keeps-previous-model",
                "description": "a valid install, then the server announces and serves a package "
                "with one model byte flipped: refused, the old model still answers",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    sync(
                        "packages/flip-model-byte.pkg",
                        {"status": "failed", "error": "package_hash_mismatch"},
                    ),
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "untrusted-package-keeps-previous-model",
                "description": "the server serves a package signed by a key the device never "
                "pinned",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    sync(
                        "packages/untrusted-key.pkg",
                        {"status": "failed", "error": "package_untrusted_key"},
                    ),
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "cut-download-resumes",
                "description": f"the connection breaks after {half} bytes; the next sync asks "
                f"Range: bytes={half}- and fetches only the rest",
                "steps": [
                    sync(plain, {"status": "failed", "error": "unavailable"}, cut_at=half),
                    sync(
                        plain,
                        {
                            "status": "updated",
                            "bytes_downloaded": plain_size - half,
                            "resumed": True,
                        },
                    ),
                ],
            },
            {
                "name": "oversize-download-refused",
                "description": "Content-Length one byte past the announced size: refused before a "
                "byte is written",
                "steps": [
                    sync(
                        plain,
                        {"status": "failed", "error": "download_oversize"},
                        extra_content_length=1,
                    )
                ],
            },
            {
                "name": "checkin-faults-keep-the-installed-model",
                "description": "after an install, the check-in answers 503, then HTML with "
                "200: each sync fails with a typed error and the model still answers locally",
                "steps": [
                    sync(plain, {"status": "updated"}),
                    {
                        **sync(plain, {"raises": "server_error"}),
                        "checkin": {"status": 503, "body": "Service Unavailable"},
                    },
                    {
                        **sync(plain, {"raises": "protocol_error"}),
                        "checkin": {"status": 200, "body": "<html>"},
                    },
                    {"predict": low, "expect": {"source": "local"}},
                ],
            },
            {
                "name": "cloud-5xx-falls-back",
                "description": "cascade, the cloud answers 503: retried max_retries times, then "
                "the local answer is returned as fallback",
                "steps": [
                    sync(plain, {"status": "updated"}, hybrid=cascade),
                    {
                        "predict": low,
                        "cloud": {"status": 503},
                        "expect": {"source": "fallback", "cloud_calls": 3},
                    },
                ],
            },
            {
                "name": "cloud-garbage-falls-back",
                "description": "cascade, the cloud answers 200 with HTML: the local answer as "
                "fallback",
                "steps": [
                    sync(plain, {"status": "updated"}, hybrid=cascade),
                    {
                        "predict": low,
                        "cloud": {"status": 200, "body": "<html>"},
                        "expect": {"source": "fallback"},
                    },
                ],
            },
        ],
    }
