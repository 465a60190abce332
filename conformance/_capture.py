"""Consented-capture vectors (``capture.json``): the policy parse, the sample wire, the modes.

Every expected value is what the Python reference does, computed here at generation time:

- ``fields``: ``protocol.CAPTURE_POLICY_FIELDS`` with the defaults of ``CapturePolicy``, so a
  client's own table of limits is checked against the one declaration;
- ``policies``: a ``capture`` object -> ``CapturePolicy.from_dict`` accepts it (the normalised
  ``to_dict()``) or refuses it (the error code and the field its message names). The invalid
  ones are derived from the field table: each kind of bad value for each field;
- ``samples``: what ``SampleCapture`` puts on the wire for a captured float32 input (the
  ``POST /v1/samples`` body, driven through the real capture and flush with a stub HTTP
  client; the random batch and sample ids are replaced by the vector's fixed ones);
- ``modes``: scripts of predictions, feedback and consent changes run through the real
  ``CaptureTap`` at rate 1 (no RNG draw), and the samples a flush then sends.

JSON cannot tell ``5`` from ``5.0``, so no vector depends on that (Python refuses ``5.0``
for an integer field; a JavaScript client cannot see the difference).
"""

from __future__ import annotations

import base64
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from pocketml.device import SampleCapture
from pocketml.errors import PocketMLError
from pocketml.protocol import (
    CAPTURE_POLICY_FIELDS,
    MAX_SAMPLE_BATCH_BYTES,
    MAX_SAMPLES_PER_BATCH,
    SAMPLE_FIELDS,
    CapturePolicy,
)

__all__ = ["capture_vectors", "run_mode_script"]

_DEVICE_ID = "conformance-capture-01"
_HEX32 = re.compile(r"[0-9a-f]{32}")


def capture_vectors() -> dict[str, Any]:
    """Everything of ``capture.json``."""
    return {
        "fields": _field_table(),
        "limits": {
            "max_samples_per_batch": MAX_SAMPLES_PER_BATCH,
            "max_sample_batch_bytes": MAX_SAMPLE_BATCH_BYTES,
            "sample_fields": [f.name for f in SAMPLE_FIELDS],
        },
        "policies": _policy_vectors(),
        "samples": _sample_vectors(),
        "modes": _mode_vectors(),
    }


# -- the policy -------------------------------------------------------------------------------


def _field_table() -> list[dict[str, Any]]:
    defaults = CapturePolicy().to_dict()
    return [
        {
            "name": f.name,
            "type": f.type,
            "minimum": f.minimum,
            "maximum": f.maximum,
            "choices": list(f.choices) if f.choices else None,
            "default": defaults[f.name],
        }
        for f in CAPTURE_POLICY_FIELDS
    ]


def _bad_values(field: dict[str, Any]) -> list[tuple[str, Any]]:
    """Each kind of invalid value for one field of the table."""
    kind = field["type"]
    if kind == "boolean":
        return [("a string", "true"), ("a number", 1), ("null", None)]
    if kind == "object":  # drifted_bins
        return [
            ("a list", [1, 2]),
            ("too many names", {f"f{i}": [0] for i in range(257)}),
            ("an empty name", {"": [0]}),
            ("a 129-char name", {"x" * 129: [0]}),
            ("indices not a list", {"f": 3}),
            ("a negative index", {"f": [1, -1]}),
            ("a boolean index", {"f": [True]}),
            ("a fractional index", {"f": [1.5]}),
            ("too many indices", {"f": list(range(4097))}),
        ]
    if field["choices"]:
        return [("an unknown choice", "sometimes"), ("a number", 1), ("null", None)]
    low, high = field["minimum"], field["maximum"]
    bad = [("a string", "1"), ("a boolean", True), ("null", None)]
    if kind == "integer":
        bad += [("a fraction", low + 0.5), ("below the minimum", low - 1), ("above", high + 1)]
    else:
        bad += [("below the minimum", low - 0.001), ("above the maximum", high + 0.001)]
    return bad


def _parse(raw: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "policy": CapturePolicy.from_dict(raw).to_dict()}
    except PocketMLError as exc:
        # The message names the field first ("capture.rate must be ..."): the vector keeps it.
        return {"ok": False, "error": exc.code, "field": str(exc).split(" ", 1)[0]}


def _policy_vectors() -> list[dict[str, Any]]:
    table = _field_table()
    valid: list[tuple[str, Any]] = [
        ("empty: every default", {}),
        ("the defaults spelled out", {f["name"]: f["default"] for f in table}),
        (
            "every field at a bound",
            {
                "enabled": True,
                "rate": 0,
                "when": "low_confidence",
                "low_confidence_below": 1,
                "drifted_bins": {"b": [9, 0, 9], "a": []},
                "max_bytes_per_day": 10**10,
                "wifi_only": False,
                "retention_days": 365,
                "max_hold": 1,
            },
        ),
        ("each mode: drifted", {"enabled": True, "when": "drifted", "drifted_bins": {"x": [3]}}),
        ("integers in number fields", {"rate": 1, "low_confidence_below": 0}),
    ]
    invalid: list[tuple[str, Any]] = [
        ("not an object", [1]),
        ("an unknown field", {"enabled": True, "sample_every": 2}),
    ]
    for field in table:
        for what, value in _bad_values(field):
            invalid.append((f"{field['name']}: {what}", {field["name"]: value}))
    return [{"name": name, "raw": raw, "expect": _parse(raw)} for name, raw in valid + invalid]


# -- the capture itself, driven through the reference -----------------------------------------


class _StubHttp:
    """Stands in for ``DeviceHttp``: records each request body and answers like the server."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def request(self, method: str, path: str, **kwargs: Any) -> _Answer:
        assert (method, path) == ("POST", "/v1/samples"), (method, path)
        body = kwargs["json"]
        self.bodies.append(body)
        return _Answer({"accepted": len(body["samples"]), "duplicates": 0})


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


class _Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _capture(work: Path, clock: _Clock, http: _StubHttp, device_class: str) -> SampleCapture:
    capture = SampleCapture(
        work / "samples.db",
        cast(Any, http),
        lambda: _DEVICE_ID,
        device_class,
        seed=0,
        on_wifi=lambda: True,
        wall_clock=clock,
    )
    capture.set_consent(True)
    return capture


def _f32(values: list[float]) -> list[float]:
    """The values as float32 would hold them (what a client stores), as JSON numbers."""
    return [float(v) for v in np.asarray(values, dtype=np.float32)]


_SAMPLE_CASES: list[dict[str, Any]] = [
    {
        "name": "two features, labelled by feedback",
        "shape": [1, 2],
        "values": [0.5, -1.25],
        "predicted": "yes",
        "confidence": 0.875,
        "label": "no",
        "device_class": "android-mid",
    },
    {
        "name": "awkward floats: -0, a subnormal, a third, a large value; no label",
        "shape": [1, 4],
        "values": [-0.0, 1e-45, 1 / 3, 3.0e38],
        "predicted": "no",
        "confidence": 0.5,
        "label": None,
        "device_class": "unknown",
    },
    {
        "name": "a confidence float32 rounded past 1 is sent as 1",
        "shape": [1, 2, 1],
        "values": [1.0, 2.0],
        "predicted": "yes",
        "confidence": 1.0000001192092896,
        "label": "yes",
        "device_class": "ios-high",
    },
]


def _sample_vectors() -> list[dict[str, Any]]:
    out = []
    for i, case in enumerate(_SAMPLE_CASES):
        values = _f32(case["values"])
        tensor = np.asarray(values, dtype=np.float32).reshape(case["shape"])
        http = _StubHttp()
        clock = _Clock(1_795_240_000.25 + i)
        with tempfile.TemporaryDirectory() as tmp:
            capture = _capture(Path(tmp), clock, http, case["device_class"])
            policy = CapturePolicy(enabled=True, when="all")
            pid = f"c0ffee{i:04d}-{i + 1}"
            capture.tap("conformance", policy, None, None).offer(
                None, tensor, pid, case["predicted"], case["confidence"], 1
            )
            if case["label"] is not None:
                capture.on_feedback(pid, case["label"])
            capture.flush()
            capture.close()
        (body,) = http.bodies
        sample_id, batch_id = f"{i + 1:032x}", f"{i + 0xB0:032x}"
        assert _HEX32.fullmatch(body["batch_id"]) and _HEX32.fullmatch(
            body["samples"][0]["sample_id"]
        )
        body = {**body, "batch_id": batch_id}
        body["samples"] = [{**body["samples"][0], "sample_id": sample_id}]
        data = base64.b64decode(body["samples"][0]["input"]["data"])
        assert list(struct.unpack(f"<{len(values)}f", data)) == values
        out.append(
            {
                "name": case["name"],
                "input": {
                    "model": "conformance",
                    "version": 1,
                    "prediction_id": pid,
                    "device_id": _DEVICE_ID,
                    "device_class": case["device_class"],
                    "shape": case["shape"],
                    "values": values,
                    "predicted": case["predicted"],
                    "confidence": case["confidence"],
                    "label": case["label"],
                    "captured_at": clock.now,
                    "sample_id": sample_id,
                    "batch_id": batch_id,
                },
                "body": body,
            }
        )
    return out


# -- the modes --------------------------------------------------------------------------------

# predictions p1..p6 with these confidences; the policy's low_confidence_below is 0.7
_CONFIDENCES = [0.95, 0.55, 0.69, 0.7, 0.99, 0.1]


def _script(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"predict": {"prediction_id": f"p{i + 1}", "predicted": "yes", "confidence": c}}
        for i, c in enumerate(_CONFIDENCES)
    ]
    return steps + list(extra)


_MODE_CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
    (
        "all: every prediction, a later label attached",
        {"when": "all"},
        _script({"feedback": {"prediction_id": "p2", "label": "no"}}),
    ),
    (
        "low_confidence: strictly below the bound",
        {"when": "low_confidence", "low_confidence_below": 0.7},
        _script({"feedback": {"prediction_id": "p3", "label": "no"}}),
    ),
    (
        "feedback: only labelled ones, in the order labelled; thumbs release unwritten",
        {"when": "feedback"},
        _script(
            {"feedback": {"prediction_id": "p5", "label": "yes"}},
            {"feedback": {"prediction_id": "p2", "label": "no"}},
            {"feedback": {"prediction_id": "p4", "label": None}},
            {"feedback": {"prediction_id": "p4", "label": "no"}},
            {"feedback": {"prediction_id": "unknown-9", "label": "no"}},
        ),
    ),
    (
        "feedback: max_hold evicts the oldest held prediction",
        {"when": "feedback", "max_hold": 3},
        _script(
            {"feedback": {"prediction_id": "p1", "label": "yes"}},
            {"feedback": {"prediction_id": "p4", "label": "no"}},
            {"feedback": {"prediction_id": "p6", "label": "no"}},
        ),
    ),
    (
        "drifted without a reference profile: nothing",
        {"when": "drifted", "drifted_bins": {"x": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}},
        _script(),
    ),
    (
        "the daily byte budget: 8-byte tensors, 20 bytes a day",
        {"when": "all", "max_bytes_per_day": 20},
        _script(),
    ),
    (
        "consent off deletes what was queued; nothing is captured until it is on again",
        {"when": "all"},
        [
            {"predict": {"prediction_id": "p1", "predicted": "yes", "confidence": 0.9}},
            {"consent": False},
            {"predict": {"prediction_id": "p2", "predicted": "yes", "confidence": 0.9}},
            {"consent": True},
            {"predict": {"prediction_id": "p3", "predicted": "no", "confidence": 0.9}},
        ],
    ),
    (
        "feedback mode: consent off drops the held predictions",
        {"when": "feedback"},
        [
            {"predict": {"prediction_id": "p1", "predicted": "yes", "confidence": 0.9}},
            {"consent": False},
            {"consent": True},
            {"feedback": {"prediction_id": "p1", "label": "yes"}},
        ],
    ),
]


def run_mode_script(
    policy: CapturePolicy, steps: list[dict[str, Any]], work: Path
) -> dict[str, Any]:
    """Run a mode vector's steps through a fresh ``SampleCapture``; what a flush sends."""
    http = _StubHttp()
    clock = _Clock(1_795_240_000.0)
    capture = _capture(work, clock, http, "unknown")
    tap = capture.tap("conformance", policy, None, None)
    tensor = np.asarray([[0.25, -0.5]], dtype=np.float32)  # 8 bytes
    for step in steps:
        clock.now += 1.0
        if "predict" in step:
            p = step["predict"]
            tap.offer(None, tensor, p["prediction_id"], p["predicted"], p["confidence"], 1)
        elif "feedback" in step:
            capture.on_feedback(step["feedback"]["prediction_id"], step["feedback"]["label"])
        else:
            capture.set_consent(step["consent"])
    report = capture.flush()
    counters = {name: capture.counter(name) for name in ("dropped_budget", "evicted")}
    capture.close()
    sent = [s for body in http.bodies for s in body["samples"]]
    return {
        "sent": [{"prediction_id": s["prediction_id"], "label": s["label"]} for s in sent],
        "pending": report.pending,
        "counters": counters,
    }


def _mode_vectors() -> list[dict[str, Any]]:
    out = []
    for name, overrides, steps in _MODE_CASES:
        policy = CapturePolicy.from_dict({"enabled": True, "rate": 1.0, **overrides})
        with tempfile.TemporaryDirectory() as tmp:
            expect = run_mode_script(policy, steps, Path(tmp))
        out.append({"name": name, "policy": policy.to_dict(), "steps": steps, "expect": expect})
    return out
