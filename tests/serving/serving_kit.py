"""Helpers of the serving tests: a real digits model and the server settings they pick.

- ``build_digits``: a logistic-regression digits model trained (~1 s) and converted to
  ONNX, with its schema and held-out inputs, for real inference.
- ``onnx_variant``: its variant entry, to push with ``pocketml.testing``.
- ``batching_settings``: server settings (check-in cache off) with chosen predict options.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pocketml.config import PredictSettings, Settings
from pocketml.testing import server_settings


@dataclass(frozen=True)
class DigitsBuild:
    """A real digits model: the ONNX file, its schema, held-out inputs and labels."""

    onnx_path: Path
    schema: dict[str, Any]
    inputs: np.ndarray
    labels: np.ndarray


def build_digits(out_dir: Path) -> DigitsBuild:
    """Train logistic regression on digits (seed 0) and convert it to ONNX."""
    from pocketml.convert import convert_model
    from pocketml.data import load_digits
    from pocketml.train import model_inputs, train

    splits = load_digits().split(seed=0)
    result = train(splits, "logistic-regression", model_name="digits", out_dir=out_dir / "run")
    samples = model_inputs(result.model, splits.test)
    (conversion,) = convert_model(
        result.model, ["onnx"], out_dir / "onnx", samples=samples, labels=splits.test.labels
    )
    return DigitsBuild(
        onnx_path=Path(conversion.path),
        schema=result.model.schema.to_dict(),
        inputs=samples,
        labels=np.asarray(splits.test.labels),
    )


def onnx_variant(build: DigitsBuild, name: str, *, role: str = "cloud") -> tuple[dict, Path]:
    """The VersionCreate entry of the real ONNX file."""
    meta = {
        "name": name,
        "format": "onnx",
        "precision": "fp32",
        "role": role,
        "sha256": hashlib.sha256(build.onnx_path.read_bytes()).hexdigest(),
    }
    return meta, build.onnx_path


def batching_settings(home: Path, database_url: str, **predict: Any) -> Settings:
    """Test server settings (check-in cache off) with these ``server.predict`` fields."""
    return server_settings(
        home, database_url, devices={"catalog_ttl_s": 0}, predict=PredictSettings(**predict)
    )
