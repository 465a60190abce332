"""A build whose version carries a reference profile: what profile-event tests push."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pocketml.convert.build import BuildVariant, write_build
from pocketml.protocol import file_sha256
from pocketml.schema import ModelSchema
from pocketml.sketch import ReferenceProfile, build_input_profile
from pocketml.testing._model_files import write_model_file
from pocketml.testing._push import DIGITS_SCHEMA

__all__ = ["write_profiled_build"]


def write_profiled_build(out: Path, seed: int, rows: int = 300) -> tuple[Path, ReferenceProfile]:
    """A one-variant build in ``out`` (an ONNX model of ``DIGITS_SCHEMA``) with a profile.

    The profile bins the 64 raw input columns (``x0`` ... ``x63``, uniform on [0, 16] like
    the digits' pixels), the predicted class and the confidence of ``rows`` seeded rows.

    Returns:
        ``(out, profile)``; ``pocketml push`` / ``AdminClient.push_build(out)`` pushes it.
    """
    rng = np.random.default_rng(seed)
    profile = build_input_profile(
        rng.uniform(0, 16, size=(rows, 64)), "NC", rng.dirichlet(np.ones(10), size=rows)
    )
    out.mkdir(parents=True, exist_ok=True)
    model = write_model_file(out / "m.onnx", "onnx", seed=seed)
    variant = BuildVariant(
        "m-onnx-fp32", model, "onnx", "fp32", "device", file_sha256(model), model.stat().st_size
    )
    schema = ModelSchema.from_dict(DIGITS_SCHEMA)
    write_build(out, schema=schema, groups=[], extra_variants=[variant], profile=profile)
    return out, profile
