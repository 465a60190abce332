"""Profile-sketch vectors (``sketches.json``): the codec, binning per layout, a window script.

Every expected value is what the Python SDK computes at generation time:
``pocketml.protocol.encode_sketch`` for the codec, the device's ``_Binner`` for the flat bin
indices of one scored input, and the device's ``Sketcher`` (over a real telemetry queue in
a temporary folder, with a fixed clock) for the window script.

A device client sums a feature in another order than numpy (which sums pairwise), so its
features and projections may differ from Python's in the last bits. Every input here is
chosen so that each binned value is more than ``MARGIN`` (relative) away from every edge of
its bins, asserted below: no summation order can flip a bin.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.device._queue import TelemetryQueue
from pocketml.device._sketcher import Sketcher, _Binner
from pocketml.protocol import MonitorPolicy, encode_sketch
from pocketml.sketch import ReferenceProfile, build_input_profile, build_profile

MARGIN = 1e-9
_CLASSES = 3
_ROWS = 400


def codec_vectors() -> list[dict[str, Any]]:
    """Counts and their ``sketch`` text: zero runs (short, 128+, trailing), signs, large values."""
    cases: list[list[int]] = [
        [],
        [0],
        [3, 0, 0, 0, 0, -1],
        [1, -1, 2, -2, 63, -64, 64, -65],
        [0] * 127 + [5] + [0] * 128,
        [0] * 300,
        [127, 128, 16_383, 16_384, 2**21, 2**28, 2**35],
        [2**40, -(2**40), 2**53 - 1, -(2**53 - 1)],
        [10**9, 0, 0, 7, 0, -(10**9)],
    ]
    return [{"counts": counts, "sketch": encode_sketch(counts)} for counts in cases]


# -- binning ------------------------------------------------------------------------------


def _reference(layout: str, rng: np.random.Generator) -> np.ndarray:
    """Raw reference inputs of a layout (batch first)."""
    if layout == "NC":
        base = rng.normal(size=(_ROWS, 1))
        return np.column_stack(
            [
                base[:, 0] * 2 + 1,
                base[:, 0] * 0.5 + rng.normal(size=_ROWS),
                rng.exponential(3, _ROWS),
            ]
        )
    if layout == "NCL":
        return rng.normal(size=(_ROWS, 2, 16)).cumsum(axis=2) * rng.uniform(0.5, 2, (_ROWS, 2, 1))
    shape = (_ROWS, 2, 5, 4) if layout == "NCHW" else (_ROWS, 5, 4, 3)
    return rng.uniform(0, 255, size=shape) * rng.uniform(0.2, 1, (_ROWS, 1, 1, 1))


def _profiles(rng: np.random.Generator) -> dict[str, tuple[ReferenceProfile, np.ndarray]]:
    """One profile per layout the TypeScript SDK's schemas allow, from seeded inputs."""
    out = {}
    for layout in ("NC", "NCL", "NCHW", "NHWC"):
        x = _reference(layout, rng)
        logits = rng.normal(size=(len(x), _CLASSES))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        out[layout] = (build_input_profile(x, layout, probs), x)
    # A table with a categorical column (integers compared as text) and no projection.
    x = np.column_stack([rng.normal(size=_ROWS), rng.integers(0, 6, _ROWS).astype(np.float64)])
    profile = build_profile(
        {"x0": x[:, 0], "x1": x[:, 1]},
        categorical=["x1"],
        predicted_class=rng.integers(0, 2, _ROWS),
        num_classes=2,
        projections=0,
    )
    out["NC-categorical"] = (profile, x)
    return out


def _far_from_edges(binner: _Binner, profile: ReferenceProfile, raw: np.ndarray) -> bool:
    """True when no computed value is within ``MARGIN`` of an edge of its bins (a table's
    features are its raw values, exact in every language: only its projections count)."""
    values = binner.features(raw)
    checks = []
    if binner.columns is None:
        checks = [(b.edges, values[i]) for i, b in enumerate(profile.bins) if b.kind == "numeric"]
    if profile.projection is not None:
        projected = (
            (values[binner.projection_columns] - binner.mean) / binner.scale
        ) @ binner.matrix
        checks += [(b.edges, projected[i]) for i, b in enumerate(profile.projection_bins)]
    for edges, value in checks:
        if not np.isfinite(value):
            continue
        gap = np.min(np.abs(np.asarray(edges) - value))
        if gap <= MARGIN * max(abs(value), 1.0):
            return False
    return True


def _number(value: float) -> float | str:
    """JSON has no NaN or infinity: those are written as "NaN", "Infinity", "-Infinity"."""
    return (
        value
        if np.isfinite(value)
        else {"nan": "NaN", "inf": "Infinity"}.get(str(value), "-Infinity")
    )


def _case(
    binner: _Binner, profile: ReferenceProfile, raw: np.ndarray, rng: np.random.Generator
) -> dict[str, Any]:
    classes = max(profile.num_classes, 1)
    predicted = int(rng.integers(0, classes))
    confidence = float(rng.choice([rng.uniform(0, 1), 1.0, 0.05, 0.95]))
    assert _far_from_edges(binner, profile, raw), "an input near an edge slipped through"
    found = binner.indices(raw, predicted, confidence)
    return {
        "raw": [_number(float(v)) for v in raw.reshape(-1)],
        "predicted": predicted,
        "confidence": confidence,
        "indices": "skipped" if found is None else [int(i) for i in found],
    }


def _on_edges(
    binner: _Binner, profile: ReferenceProfile, reference: np.ndarray, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Table inputs whose columns equal an edge exactly (first, inner, last): the bin to the
    edge's right (``side="right"``), which a client searching with ``<`` gets wrong."""
    cases = []
    for row in range(2, 40):
        raw = reference[row].copy()
        for column, bins in enumerate(profile.bins):
            if bins.kind == "numeric":
                raw[column] = bins.edges[(0, len(bins.edges) // 2, -1)[row % 3]]
        if _far_from_edges(binner, profile, raw):
            cases.append(_case(binner, profile, raw, rng))
        if len(cases) == 3:
            break
    assert len(cases) == 3, "no on-edge inputs with projections away from their edges"
    return cases


def binning_vectors() -> list[dict[str, Any]]:
    """Per layout: a profile, its sample shape, inputs and their expected flat indices."""
    rng = np.random.default_rng(20261205)
    vectors = []
    for name, (profile, reference) in _profiles(rng).items():
        layout = name.split("-")[0]
        binner = _Binner(profile, layout)
        cases = []
        for row in rng.permutation(len(reference))[:40]:
            # Scaled a little so some land in the tails (underflow / overflow bins) too.
            raw = reference[row] * float(rng.choice([1.0, 1.0, 0.2, 3.0]))
            if _far_from_edges(binner, profile, raw):
                cases.append(_case(binner, profile, raw, rng))
            if len(cases) == 12:
                break
        special = reference[0].copy()
        special.reshape(-1)[0] = np.nan
        cases.append(_case(binner, profile, special, rng))
        if layout == "NC":
            for value in (np.inf, -np.inf):
                special = reference[1].copy()
                special[0] = value
                if _far_from_edges(binner, profile, special):
                    cases.append(_case(binner, profile, special, rng))
            cases += _on_edges(binner, profile, reference, rng)
        vectors.append(
            {
                "name": name,
                "layout": layout,
                "sample_shape": list(reference.shape[1:]),
                "profile": profile.to_dict(),
                "cases": cases,
            }
        )
    return vectors


# -- the window script --------------------------------------------------------------------


def window_script() -> dict[str, Any]:
    """A scripted run of the Sketcher without DP: its steps and the events it queues.

    Steps: ``{"op": "start", "now"}`` (the tracker is made; the first window aligns to
    ``now``), ``{"op": "add", "ts", "case"}`` (one binning case of the ``NC`` vector) and
    ``{"op": "flush", "now"}`` (windows close early, as ``flush()`` does).
    """
    rng = np.random.default_rng(7)
    profile, reference = _profiles(np.random.default_rng(20261205))["NC"]
    binner = _Binner(profile, "NC")
    policy = MonitorPolicy(window_s=60, max_rows=4)
    inputs = [
        _case(binner, profile, reference[i], rng)
        for i in range(len(reference))
        if _far_from_edges(binner, profile, reference[i])
    ][:12]
    base = 1_764_900_000  # a multiple of 60
    steps: list[dict[str, Any]] = [{"op": "start", "now": base + 5.5}]
    # Three in the first window, one in the next minute (closes the first), four more in
    # that minute (the fourth fills it: max_rows), one late, then a flush.
    times = [base + 6, base + 20.25, base + 59.5, base + 61, base + 62, base + 70, base + 80]
    times += [base + 90, base + 95, base + 250.75]
    steps += [{"op": "add", "ts": t, "case": i} for i, t in enumerate(times)]
    steps.append({"op": "flush", "now": base + 251})
    events: list[dict[str, Any]] = []
    now = [0.0]
    with tempfile.TemporaryDirectory() as tmp:
        queue = TelemetryQueue(Path(tmp) / "telemetry.sqlite3")
        sketcher = Sketcher(queue, events.append, lambda *a: None, wall=lambda: now[0])
        tracker = None
        for step in steps:
            if step["op"] == "start":
                now[0] = step["now"]
                tracker = sketcher.tracker("conformance", 1, profile, "NC", policy)
            elif step["op"] == "add":
                assert tracker is not None
                case = inputs[step["case"]]
                raw = np.asarray([float(v) for v in case["raw"]])
                tracker.add(raw, case["predicted"], case["confidence"], step["ts"])
            else:
                now[0] = step["now"]
                sketcher.close_windows(early=True)
    return {
        "model": "conformance",
        "version": 1,
        "profile": "NC",
        "policy": policy.to_dict(),
        "inputs": inputs,
        "steps": steps,
        "events": events,
    }


def sketch_vectors() -> dict[str, Any]:
    """The whole ``sketches.json``."""
    return {
        "margin": MARGIN,
        "codec": codec_vectors(),
        "binning": binning_vectors(),
        "windows": window_script(),
    }


# -- the server case ----------------------------------------------------------------------


def sketch_world(model_file: Path) -> dict[str, Any]:
    """The ``profile-sketch`` server case's world: an app of its own, the conformance model
    pushed with a reference profile, and the counts a device's one window must hold after
    predicting every input of predictions.json (binned by the Python SDK's ``_Binner`` with
    ONNX Runtime's answers).

    A separate app keeps the other cases' event counts as they are.
    """
    import hashlib

    import onnxruntime as ort
    from _world import MODEL, RAW_INPUTS, SCHEMA, VARIANT

    from pocketml.schema import ModelSchema

    schema = ModelSchema.from_dict(SCHEMA)
    session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(17)
    reference = rng.normal([2.0, 4.0], [4.0, 8.0], size=(500, 2)).astype(np.float32)
    probs = session.run(None, {"x": schema.normalize(reference)})[0]
    profile = build_input_profile(reference.astype(np.float64), "NC", probs)
    binner = _Binner(profile, "NC")
    raw = np.asarray(RAW_INPUTS, dtype=np.float32)
    answers = session.run(None, {"x": schema.normalize(raw)})[0]
    counts = np.zeros(profile.layout.total, dtype=np.int64)
    for x, p in zip(raw, answers, strict=True):
        index = int(p.argmax())
        confidence = p.item(index)
        assert _far_from_edges(binner, profile, x.astype(np.float64))
        scaled = confidence * 20  # CONFIDENCE_BINS: no ulp of a float32 answer flips a bin
        assert abs(scaled - round(scaled)) > 1e-4 or confidence == 1.0
        found = binner.indices(x.astype(np.float64), index, confidence)
        assert found is not None
        counts[found] += 1
    offsets = profile.layout.offsets
    return {
        "app": f"{MODEL}-sketch",
        "model": {
            "name": MODEL,
            "variant": VARIANT,
            "format": "onnx",
            "precision": "fp32",
            "file": "model/logreg.onnx",
            "encrypt": False,
            "schema": SCHEMA,
            "model_sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
            "reference_profile": profile.to_dict(),
        },
        "expect": {
            "events": 1,
            "n": len(raw),
            "counts": {
                name: [int(c) for c in counts[offsets[i] : offsets[i + 1]]]
                for i, name in enumerate(profile.layout.names)
            },
        },
    }
