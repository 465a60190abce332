"""From write_build to a device: the reference profile travels with `pocketml push` end to end."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from pocketml.convert.build import BuildVariant, write_build
from pocketml.errors import InvalidInput
from pocketml.monitor import ReferenceProfile, build_input_profile
from pocketml.protect import PROFILE_MEMBER, read_member, verify_package
from pocketml.protocol import file_sha256
from pocketml.schema import ModelSchema
from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer, write_model_file


def _build_with_profile(out: Path, seed: int) -> tuple[Path, ReferenceProfile]:
    """A one-variant build in ``out`` whose build.json lists a reference profile."""
    rng = np.random.default_rng(seed)
    profile = build_input_profile(
        rng.uniform(0, 16, size=(300, 1, 8, 8)), "NCHW", rng.dirichlet(np.ones(10), size=300)
    )
    model = write_model_file(out / "m.onnx", "onnx", seed=seed)
    variant = BuildVariant(
        "m-onnx-fp32", model, "onnx", "fp32", "device", file_sha256(model), model.stat().st_size
    )
    schema = ModelSchema.from_dict(DIGITS_SCHEMA)
    write_build(out, schema=schema, groups=[], extra_variants=[variant], profile=profile)
    return out, profile


def test_a_pushed_build_stores_its_profile_and_every_package_ships_it(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    out, profile = _build_with_profile(tmp_path / "build", seed=5)

    with live_server.admin(app_a.admin_token) as client:
        pushed = client.push_build(out)
        shown = client.show_version(pushed.model, pushed.version)
        package = client.download_package(shown.variants[0].package_id, tmp_path / "p.pmlpkg")
        app = client.show_app()

    trusted = {key_id: base64.b64decode(raw) for key_id, raw in app.public_keys.items()}
    verified = verify_package(package, trusted_keys=trusted, app_id=app_a.app.id)
    assert shown.reference_profile_sha256 is not None
    assert verified.manifest["members"][PROFILE_MEMBER]["sha256"] == shown.reference_profile_sha256
    shipped = ReferenceProfile.from_dict(json.loads(read_member(verified, PROFILE_MEMBER)))
    assert shipped.to_dict() == profile.to_dict()
    with live_server.http(app_a.admin_token) as http:
        read = http.get(f"/v1/admin/models/{pushed.model}/versions/{pushed.version}/profile")
    assert read.status_code == 200
    assert ReferenceProfile.from_dict(read.json()).to_dict() == profile.to_dict()


def test_a_profile_the_monitor_cannot_read_is_refused_and_nothing_is_stored(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    out, _ = _build_with_profile(tmp_path / "build", seed=6)
    broken = json.loads((out / "profile.json").read_text())
    broken["format"] = "not-a-profile"
    (out / "profile.json").write_text(json.dumps(broken))

    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        with pytest.raises(InvalidInput, match="reference_profile"):
            client.push_build(out, model="digits")
        assert client.list_versions("digits").total == 0
    with live_server.http(app_a.admin_token) as http:
        missing = http.get("/v1/admin/models/digits/versions/1/profile")
    assert missing.status_code == 404
