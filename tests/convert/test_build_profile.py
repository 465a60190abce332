"""write_build's profile.json: written beside build.json, listed in it, and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketml.convert.build import PROFILE_FILE, BuildVariant, write_build
from pocketml.monitor import ReferenceProfile, build_input_profile
from pocketml.schema import ModelSchema
from pocketml.testing import DIGITS_SCHEMA


@pytest.fixture
def variant(tmp_path: Path) -> BuildVariant:
    path = tmp_path / "build" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(b"onnx")
    return BuildVariant("m-onnx-fp32", path, "onnx", "fp32", "device", "0" * 64, 4)


@pytest.fixture
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 16, size=(300, 1, 8, 8))
    return build_input_profile(x, "NCHW", rng.dirichlet(np.ones(10), size=300))


def test_the_profile_is_written_beside_build_json_and_listed_in_it(
    variant: BuildVariant, profile: ReferenceProfile
) -> None:
    out = variant.path.parent
    schema = ModelSchema.from_dict(DIGITS_SCHEMA)

    manifest = json.loads(
        write_build(
            out, schema=schema, groups=[], extra_variants=[variant], profile=profile
        ).read_text()
    )

    assert manifest["reference_profile"] == PROFILE_FILE
    written = json.loads((out / manifest["reference_profile"]).read_text())
    assert ReferenceProfile.from_dict(written).to_dict() == profile.to_dict()


def test_a_build_without_a_profile_lists_none_and_leaves_no_stale_file(
    variant: BuildVariant, profile: ReferenceProfile
) -> None:
    out = variant.path.parent
    schema = ModelSchema.from_dict(DIGITS_SCHEMA)
    write_build(out, schema=schema, groups=[], extra_variants=[variant], profile=profile)

    path = write_build(out, schema=schema, groups=[], extra_variants=[variant])

    assert json.loads(path.read_text())["reference_profile"] is None
    assert not (out / PROFILE_FILE).exists()
