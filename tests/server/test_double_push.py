"""A double push over HTTP and the CLI: 409 ``conflict`` naming the version; --force stores it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from pocketml.server.schemas import AppCreatedPublic
from pocketml.testing import DIGITS_SCHEMA, LiveServer, model_variant

from .test_cli import _build_dir, _cli


def test_the_same_files_pushed_again_answer_409_conflict_naming_the_version(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    entry, path = model_variant(tmp_path, "onnx-fp32", seed=5, size=3000)
    meta = {"variants": [entry]}
    with live_server.admin(app_a.admin_token) as client:
        client.create_model("digits", DIGITS_SCHEMA)
        client.push_files("digits", meta, {"onnx-fp32": path})
    body = json.dumps(meta)
    files = {"metadata": (None, body, "application/json"), "onnx-fp32": ("m", path.read_bytes())}
    response = httpx.post(
        f"{live_server.url}/v1/admin/models/digits/versions",
        files=files,
        headers={"Authorization": f"Bearer {app_a.admin_token}"},
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict"
    assert "digits v1 has exactly the same model files" in error["message"]
    assert "--force" in error["message"]
    with live_server.admin(app_a.admin_token) as client:
        assert client.list_versions("digits").total == 1
        assert client.push_files("digits", meta, {"onnx-fp32": path}, force=True).version == 2


def test_pocketml_push_twice_is_refused_and_force_pushes_it_again(
    live_server: LiveServer, app_a: AppCreatedPublic, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live_server.url, "POCKETML_TOKEN": app_a.admin_token}
    build = str(_build_dir(tmp_path / "build"))

    first = runner.invoke(_cli(), ["push", build], env=env)
    second = runner.invoke(_cli(), ["push", build], env=env)
    forced = runner.invoke(_cli(), ["push", build, "--force"], env=env)

    assert first.exit_code == 0, first.output
    assert second.exit_code != 0
    assert "digits v1 has exactly the same model files" in str(second.exception)
    assert forced.exit_code == 0, forced.output
    assert "digits v2 (candidate)" in forced.output
