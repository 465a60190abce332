"""A small, deterministic "digits" build for simulations and tests (no training loop).

The device model is a nearest-centroid classifier on the bundled digits data written as one
linear layer (``logits = k * (x . mu_c - |mu_c|^2 / 2)``), exported to ONNX and TFLite by
pocketml's real converters; the cloud model is the same classifier with a sharper
temperature. Closed-form weights make the build fast and identical on every run, and
:func:`centroids` gives tests inputs whose confidence is known in advance (a centroid is
confident, the midpoint of two centroids is a near tie).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pocketml.errors import InvalidInput, NotFound, Unavailable
from pocketml.protocol import file_sha256
from pocketml.schema import ModelSchema

__all__ = [
    "DEMO_MODEL",
    "centroids",
    "demo_inputs",
    "fetch_schema",
    "inputs_for_schema",
    "write_demo_build",
]

DEMO_MODEL = "digits"
_SCALE = 1.0 / 16.0  # raw digits pixels are 0..16
_PROFILES = {
    "tflite": ["android-low", "android-mid", "android-high"],
    "onnx": ["edge-linux", "iphone"],
    "ort": ["android-low", "android-mid", "android-high", "iphone"],
}


def centroids() -> np.ndarray:
    """The mean RAW digits image of each class, shape (10, 64), values in 0..16."""
    from pocketml.data import load_digits

    digits = load_digits()
    x = np.asarray(digits.features, dtype=np.float32).reshape(len(digits), -1)
    y = np.asarray(digits.labels)
    return np.stack([x[y == c].mean(axis=0) for c in range(10)]).astype(np.float32)


def demo_inputs(count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` raw digits images (shape (count, 64)) drawn with a fixed seed."""
    from pocketml.data import load_digits

    digits = load_digits()
    x = np.asarray(digits.features, dtype=np.float32).reshape(len(digits), -1)
    rows = np.random.default_rng(seed).choice(len(x), size=count, replace=count > len(x))
    return x[rows]


def inputs_for_schema(schema: ModelSchema, count: int, *, seed: int = 0) -> np.ndarray:
    """``count`` raw inputs shaped for ``schema``'s first input.

    Digits images when the model takes 64 values (8×8 digits in any layout), otherwise
    uniform values in the input's ``value_range`` (default [0, 1]): enough to exercise
    sync, inference and telemetry against any model.
    """
    shape = schema.input.sample_shape
    if int(np.prod(shape)) == 64:
        return demo_inputs(count, seed=seed).reshape(count, *shape)
    low, high = schema.input.value_range or (0.0, 1.0)
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, size=(count, *shape)).astype(np.float32)


def fetch_schema(server_url: str, device_key: str, model: str) -> ModelSchema:
    """Check in once as a throwaway device and read ``model``'s schema from the manifest.

    Raises:
        Unavailable: the server cannot be reached.
        NotFound: the app has no such model.
    """
    import httpx

    facts = {
        "device_id": "pocketml-simulate-probe",
        "platform": "linux",
        "os_version": "sim",
        "app_version": "sim",
        "formats": ["onnx"],
    }
    headers = {"Authorization": f"Bearer {device_key}"}
    try:
        response = httpx.post(
            f"{server_url.rstrip('/')}/v1/checkin", json=facts, headers=headers, timeout=30
        )
    except httpx.HTTPError as exc:
        raise Unavailable(
            f"cannot reach {server_url}: {exc}. Is `pocketml server` running?"
        ) from exc
    if response.status_code >= 400:
        detail = response.text[:200]
        raise Unavailable(
            f"check-in at {server_url} failed with HTTP {response.status_code}: {detail}"
        )
    for entry in response.json().get("models", []):
        if entry.get("name") == model and entry.get("schema"):
            return ModelSchema.from_dict(entry["schema"])
    raise NotFound(f"the app has no model {model!r} with a schema; push one with `pocketml push`")


def _linear_model(sharpness: float) -> object:
    import torch

    from pocketml.schema import Normalization
    from pocketml.train.model import TrainedModel, make_schema

    mu = centroids() * _SCALE
    layer = torch.nn.Linear(64, 10)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(sharpness * mu))
        layer.bias.copy_(torch.from_numpy(-sharpness * (mu**2).sum(axis=1) / 2))
    schema = make_schema(
        DEMO_MODEL,
        (64,),
        [str(i) for i in range(10)],
        layout="NC",
        normalization=Normalization(scale=_SCALE),
        value_range=(0.0, 16.0),
    )
    return TrainedModel("pytorch", "custom", layer, schema)


def write_demo_build(
    out_dir: Path | str,
    *,
    formats: tuple[str, ...] = ("onnx", "tflite"),
    sharpness: float = 4.0,
    cloud_sharpness: float = 12.0,
) -> Path:
    """Write a BUILD_DIR (``build.json``, ``schema.json``, ``card.md``, model files).

    Args:
        out_dir: the directory to write.
        formats: device variants to build ("onnx", "ort", "tflite").
        sharpness: inverse temperature of the device model (lower: less confident).
        cloud_sharpness: inverse temperature of the cloud model (an ONNX variant).

    Returns:
        ``out_dir``, ready for ``AdminClient.push_build``.

    Raises:
        InvalidInput: an unknown format.
        MissingDependencyError: the build extra (torch, litert-torch) is missing.
    """
    from pocketml.convert.onnx import to_onnx

    unknown = [f for f in formats if f not in _PROFILES]
    if unknown:
        raise InvalidInput(f"formats must be among onnx, ort, tflite; got {unknown}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _linear_model(sharpness)
    cloud = _linear_model(cloud_sharpness)
    files: dict[str, tuple[Path, str, str]] = {}
    onnx_path = to_onnx(device, out / "device.onnx")  # type: ignore[arg-type]
    if "onnx" in formats:
        files["nc-small-onnx-fp32"] = (onnx_path, "onnx", "device")
    if "ort" in formats:
        from pocketml.convert.ort import to_ort

        files["nc-small-ort-fp32"] = (to_ort(onnx_path, out / "device.ort"), "ort", "device")
    if "tflite" in formats:
        from pocketml.convert.tflite import to_tflite

        path = to_tflite(device, out / "device.tflite")  # type: ignore[arg-type]
        files["nc-small-tflite-fp32"] = (path, "tflite", "device")
    files["nc-large-onnx-fp32"] = (to_onnx(cloud, out / "cloud.onnx"), "onnx", "cloud")  # type: ignore[arg-type]
    variants = [
        {
            "name": name,
            "file": path.name,
            "format": fmt,
            "precision": "fp32",
            "role": role,
            "sha256": file_sha256(path),
            "size": path.stat().st_size,
            "profiles": _PROFILES[fmt] if role == "device" else [],
        }
        for name, (path, fmt, role) in files.items()
    ]
    (out / "schema.json").write_text(device.schema.to_json())  # type: ignore[attr-defined]
    (out / "card.md").write_text(
        "# digits (simulation)\n\nNearest-centroid classifier on the bundled digits data, "
        "closed-form weights; for fleet simulations and tests.\n"
    )
    build = {
        "format_version": 1,
        "model": DEMO_MODEL,
        "schema": "schema.json",
        "card": "card.md",
        "source_framework": "pytorch",
        "params": {"sharpness": sharpness, "cloud_sharpness": cloud_sharpness},
        "variants": variants,
    }
    (out / "build.json").write_text(json.dumps(build, indent=2) + "\n")
    return out
