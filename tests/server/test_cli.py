"""The admin CLI against a live server: app create, push, models list, versions promote."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from pocketml.cli import _admin, _server
from pocketml.errors import InvalidInput, Unavailable
from pocketml.testing import DIGITS_SCHEMA, OPERATOR_TOKEN, LiveServer, write_model_file

from .conftest import sha256_of


def _cli() -> typer.Typer:
    """The commands wired exactly as ``pocketml.cli`` registers them."""
    app = typer.Typer()
    app.command("server")(_server.server)
    app.add_typer(_admin.app_app, name="app")
    app.command("push")(_admin.push)
    app.add_typer(_admin.models_app, name="models")
    app.add_typer(_admin.versions_app, name="versions")
    return app


def _build_dir(root: Path) -> Path:
    root.mkdir()
    model = write_model_file(root / "model.onnx", "onnx", seed=11, size=12_000)
    (root / "schema.json").write_text(json.dumps(DIGITS_SCHEMA))
    (root / "card.md").write_text("# Digits\n")
    (root / "run.json").write_text(json.dumps({"seed": 0}))
    (root / "build.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "model": "digits",
                "schema": "schema.json",
                "card": "card.md",
                "run_record": "run.json",
                "source_framework": "pytorch",
                "metrics": {"accuracy": 0.9},
                "variants": [
                    {
                        "name": "onnx-fp32",
                        "file": "model.onnx",
                        "format": "onnx",
                        "precision": "fp32",
                        "sha256": sha256_of(model),
                        "size": model.stat().st_size,
                    }
                ],
            }
        )
    )
    return root


def test_app_create_push_list_and_promote_through_the_cli(
    live_server: LiveServer, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live_server.url}
    created = runner.invoke(
        _cli(), ["app", "create", "cli-app", "--token", OPERATOR_TOKEN], env=env
    )
    assert created.exit_code == 0, created.output
    admin_token = next(word for word in created.output.split() if word.startswith("pml_adm_"))
    env["POCKETML_TOKEN"] = admin_token

    pushed = runner.invoke(_cli(), ["push", str(_build_dir(tmp_path / "build"))], env=env)
    listed = runner.invoke(_cli(), ["models", "list"], env=env)
    promoted = runner.invoke(_cli(), ["versions", "promote", "digits", "1"], env=env)
    versions = runner.invoke(_cli(), ["versions", "list", "digits"], env=env)

    assert pushed.exit_code == 0, pushed.output
    assert "digits v1 (candidate)" in pushed.output
    assert listed.exit_code == 0
    assert "digits" in listed.output
    assert promoted.exit_code == 0
    assert "production" in promoted.output
    assert versions.exit_code == 0
    assert "production" in versions.output
    with live_server.admin(admin_token) as client:
        assert client.show_model("digits").production_version == 1


def test_an_env_file_that_cannot_be_written_fails_before_the_app_exists(
    live_server: LiveServer, tmp_path: Path
) -> None:
    # The secrets are shown once: a missing folder must not cost them after the app exists.
    env = {"POCKETML_SERVER_URL": live_server.url}
    missing = tmp_path / "no-such-dir" / "app.env"
    result = CliRunner().invoke(
        _cli(),
        ["app", "create", "env-app", "--token", OPERATOR_TOKEN, "--env-file", str(missing)],
        env=env,
    )
    assert isinstance(result.exception, InvalidInput), result.output
    assert "no app was created" in str(result.exception)
    with live_server.admin(OPERATOR_TOKEN) as operator:
        assert "env-app" not in {app.name for app in operator.list_apps().items}

    written = tmp_path / "app.env"
    created = CliRunner().invoke(
        _cli(),
        ["app", "create", "env-app", "--token", OPERATOR_TOKEN, "--env-file", str(written)],
        env=env,
    )
    assert created.exit_code == 0, created.output
    text = written.read_text()
    assert f"export POCKETML_SERVER_URL={live_server.url}" in text
    assert "export POCKETML_TOKEN=pml_adm_" in text and written.stat().st_mode & 0o777 == 0o600


def test_push_with_a_bad_sha256_fails_before_contacting_the_server(tmp_path: Path) -> None:
    build = _build_dir(tmp_path / "build")
    manifest = json.loads((build / "build.json").read_text())
    manifest["variants"][0]["sha256"] = "1" * 64
    (build / "build.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(
        _cli(),
        ["push", str(build), "--server", f"http://127.0.0.1:{_closed_port()}", "--token", "x"],
    )
    assert result.exit_code != 0
    assert "sha256 mismatch" in str(result.exception)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_raises_unavailable_naming_the_fix() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(_cli(), ["models", "list", "--server", url, "--token", "t"])
    assert isinstance(result.exception, Unavailable)
    assert f"Is the server running at {url}?" in str(result.exception)
    assert "pocketml server" in str(result.exception)


def test_pocketml_main_exits_2_when_the_server_is_unreachable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import pocketml.cli

    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(SystemExit) as exit_info:
        pocketml.cli.main(["models", "list", "--server", url, "--token", "t"])
    assert exit_info.value.code == 2
    assert "pocketml server" in capsys.readouterr().err
