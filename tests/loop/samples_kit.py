"""What the sample store tests share: a normalized digits schema, sample and batch builders,
and a ``SampleStore`` opened in the test's process on the live server's database."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import numpy as np

from pocketml.loop import SampleStore
from pocketml.protect import MasterKey
from pocketml.registry import Registry, open_artifact_store
from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer, model_variant

NORMALIZED_SCHEMA: dict[str, Any] = {
    **DIGITS_SCHEMA,
    "inputs": [
        {
            **DIGITS_SCHEMA["inputs"][0],
            "normalization": {"scale": 0.0625, "mean": [0.25], "std": [0.5]},
        }
    ],
}
"""DIGITS_SCHEMA with ``y = (x / 16 - 0.25) / 0.5``: a round trip has something to undo."""

DEVICE_A = "device-aaaaaaaa"
DEVICE_B = "device-bbbbbbbb"


def normalize(raw: np.ndarray) -> np.ndarray:
    """What a device does to a raw input under ``NORMALIZED_SCHEMA``."""
    return ((raw * 0.0625 - 0.25) / 0.5).astype(np.float32)


def sample(
    seen: np.ndarray,
    *,
    model: str = "digits",
    version: int = 1,
    label: str | None = None,
    predicted: str = "3",
    prediction_id: str | None = None,
    device_class: str = "android-mid",
    shape: list[int] | None = None,
    sample_id: str | None = None,
) -> dict[str, Any]:
    """One wire sample of a float32 tensor (``seen``: as the model saw it)."""
    data = np.ascontiguousarray(seen, dtype="<f4").tobytes()
    return {
        "sample_id": sample_id or secrets.token_hex(16),
        "model": model,
        "version": version,
        "prediction_id": prediction_id,
        "device_class": device_class,
        "input": {
            "shape": shape or [1, *np.shape(seen)],
            "dtype": "float32",
            "data": base64.b64encode(data).decode(),
        },
        "predicted": predicted,
        "confidence": 0.6,
        "label": label,
        "captured_at": 1_700_000_000.0,
    }


def batch(samples: list[dict[str, Any]], device_id: str = DEVICE_A) -> dict[str, Any]:
    """A ``POST /v1/samples`` body."""
    return {"batch_id": secrets.token_hex(16), "device_id": device_id, "samples": samples}


def shipped_app(server: LiveServer, name: str, tmp: Any) -> AppKeys:
    """A new app with ``digits`` v1 (normalized schema) in production."""
    app = server.create_app(name)
    server.push(app, "digits", [model_variant(tmp, "onnx-fp32")], schema=NORMALIZED_SCHEMA)
    return app


def open_store(server: LiveServer) -> tuple[SampleStore, Registry]:
    """A SampleStore on the live server's database and artifact store (close the registry)."""
    settings = server.settings
    artifacts = open_artifact_store(settings.resolved_artifact_url)
    registry = Registry(
        settings.resolved_database_url,
        artifacts,
        MasterKey.load_or_create(settings.home / "master.key"),
    )
    registry.open()
    return SampleStore(registry, artifacts), registry
