"""``pocketml app keys show|rotate|revoke`` against a live server."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from pocketml.cli import _admin
from pocketml.protect import Keyring
from pocketml.testing import OPERATOR_TOKEN, LiveServer


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(_admin.app_app, name="app")
    return app


def test_keys_show_rotate_and_revoke_through_the_cli(
    live_server: LiveServer, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"POCKETML_SERVER_URL": live_server.url, "COLUMNS": "200"}
    created = runner.invoke(
        _cli(), ["app", "create", "keys-app", "--token", OPERATOR_TOKEN], env=env
    )
    env["POCKETML_TOKEN"] = next(w for w in created.output.split() if w.startswith("pml_adm_"))
    first_file = tmp_path / "keyring-1.json"

    shown = runner.invoke(_cli(), ["app", "keys", "show", "--out", str(first_file)], env=env)
    first = Keyring.from_json(first_file.read_bytes())
    refused = runner.invoke(_cli(), ["app", "keys", "revoke", first.active], env=env)
    rotated = runner.invoke(_cli(), ["app", "keys", "rotate"], env=env)
    revoked = runner.invoke(
        _cli(), ["app", "keys", "revoke", first.active, "--reason", "test"], env=env
    )
    final = runner.invoke(_cli(), ["app", "keys", "show"], env=env)

    assert shown.exit_code == 0, shown.output
    assert first.sequence == 1 and first.active in shown.output
    assert refused.exit_code != 0 and "rotate first" in " ".join(str(refused.exception).split())
    assert rotated.exit_code == 0, rotated.output
    assert revoked.exit_code == 0, revoked.output
    assert "Keyring 3" in final.output
    rows = [line for line in final.output.splitlines() if first.active in line]
    assert len(rows) == 1 and "revoked" in rows[0]
