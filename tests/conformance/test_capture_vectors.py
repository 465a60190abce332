"""The Python reference against ``conformance/capture.json`` (the TypeScript SDK runs it too).

The vectors were computed by this code at generation time; running them here keeps them
honest when either side changes (``test_python_sdk.py`` fails when the file is stale).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pocketml.device import SampleCapture
from pocketml.errors import PocketMLError
from pocketml.protocol import (
    CAPTURE_POLICY_FIELDS,
    MAX_SAMPLE_BATCH_BYTES,
    MAX_SAMPLES_PER_BATCH,
    CapturePolicy,
    encode_tensor,
    parse_sample_batch,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "conformance" / "capture.json").read_text("utf-8"))


def test_field_table_is_the_protocol_declaration() -> None:
    table = [(f["name"], f["type"], f["minimum"], f["maximum"]) for f in VECTORS["fields"]]
    assert table == [(f.name, f.type, f.minimum, f.maximum) for f in CAPTURE_POLICY_FIELDS]
    assert {f["name"]: f["default"] for f in VECTORS["fields"]} == CapturePolicy().to_dict()
    assert VECTORS["limits"]["max_samples_per_batch"] == MAX_SAMPLES_PER_BATCH
    assert VECTORS["limits"]["max_sample_batch_bytes"] == MAX_SAMPLE_BATCH_BYTES


@pytest.mark.parametrize(
    "vector", VECTORS["policies"], ids=[v["name"] for v in VECTORS["policies"]]
)
def test_policy_vector(vector: dict[str, Any]) -> None:
    try:
        outcome = {"ok": True, "policy": CapturePolicy.from_dict(vector["raw"]).to_dict()}
    except PocketMLError as exc:
        outcome = {"ok": False, "error": exc.code, "field": str(exc).split(" ", 1)[0]}
    assert outcome == vector["expect"]


@pytest.mark.parametrize("vector", VECTORS["samples"], ids=[v["name"] for v in VECTORS["samples"]])
def test_sample_wire_vector_is_a_valid_batch_of_the_input(vector: dict[str, Any]) -> None:
    given = vector["input"]
    tensor = np.asarray(given["values"], dtype="<f4").reshape(given["shape"])
    body = vector["body"]
    sample = body["samples"][0]
    assert sample["input"] == encode_tensor(tuple(given["shape"]), tensor.tobytes())
    parsed = parse_sample_batch(body)  # the server's structural check accepts it
    assert (parsed.batch_id, parsed.device_id) == (given["batch_id"], given["device_id"])
    assert parsed.samples[0].confidence == min(given["confidence"], 1.0)
    assert (parsed.samples[0].label, parsed.samples[0].captured_at) == (
        given["label"],
        given["captured_at"],
    )


def _load_generator() -> ModuleType:
    path = ROOT / "conformance" / "_capture.py"
    spec = importlib.util.spec_from_file_location("conformance_capture", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("vector", VECTORS["modes"], ids=[v["name"] for v in VECTORS["modes"]])
def test_mode_vector(vector: dict[str, Any], tmp_path: Path) -> None:
    policy = CapturePolicy.from_dict(vector["policy"])
    run = _load_generator().run_mode_script
    assert run(policy, vector["steps"], tmp_path) == vector["expect"]


def test_mode_vectors_cover_every_mode() -> None:
    modes = {v["policy"]["when"] for v in VECTORS["modes"]}
    assert modes == {"all", "low_confidence", "feedback", "drifted"}


def test_nothing_is_captured_while_a_forget_me_is_owed(tmp_path: Path) -> None:
    http: Any = None  # nothing is sent here
    capture = SampleCapture(tmp_path / "samples.db", http, lambda: "device-0001", "unknown")
    capture.set_consent(True)
    capture.set_forget_pending(True)  # what Device.forget_me leaves when the server is offline
    tensor = np.asarray([[0.25, -0.5]], dtype=np.float32)
    policy = CapturePolicy(enabled=True, when="all")
    capture.tap("conformance", policy, None, None).offer(None, tensor, "p1", "yes", 0.9, 1)
    assert capture.pending() == 0
