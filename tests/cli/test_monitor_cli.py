"""``pocketml monitor drift|accuracy`` against a live server: readable at 80 columns, a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from pocketml.cli import app as cli
from pocketml.cli import main
from pocketml.errors import InvalidInput
from pocketml.sketch import ReferenceProfile
from pocketml.testing import (
    DIGITS_SCHEMA,
    AppKeys,
    LiveServer,
    model_variant,
    monitor_profile,
    push_version,
    store_sketches,
)

HOUR = 3600
T0 = 1_795_240_000 - 1_795_240_000 % HOUR
UNTIL = str(T0 + 3 * HOUR)


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return monitor_profile()


@pytest.fixture
def env(
    live_server: LiveServer, pocketml_app: AppKeys, profile: ReferenceProfile, tmp_path: Path
) -> dict[str, str]:
    """The CLI's environment for an app whose 'digits' v1 has 3 hours of sketches: phones
    see the reference world, tablets x0 moved by 1.5 sigma."""
    with live_server.admin(pocketml_app.admin_token) as client:
        push_version(
            client,
            "digits",
            [model_variant(tmp_path, "onnx-fp32")],
            schema=DIGITS_SCHEMA,
            stage="production",
            reference_profile=profile.to_dict(),
        )
    url = live_server.settings.resolved_database_url
    store_sketches(url, pocketml_app.app_id, profile, "phone", start=T0, seed=1)
    store_sketches(
        url, pocketml_app.app_id, profile, "tablet-with-a-long-name", start=T0, seed=2, shift=1.5
    )
    return {
        "POCKETML_SERVER_URL": live_server.url,
        "POCKETML_TOKEN": pocketml_app.admin_token,
        "COLUMNS": "80",
    }


def _widest(output: str) -> int:
    return max(cell_len(line) for line in output.splitlines())


def test_monitor_drift_fits_80_columns_most_drifted_first(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["monitor", "drift", "digits", "--until", UNTIL], env=env)

    assert result.exit_code == 0, result.output
    assert _widest(result.output) <= 80
    lines = result.output.splitlines()
    assert "DRIFT" in lines[0] + lines[1]  # the fleet's verdict in the title
    first_block = next(line for line in lines if line.startswith("│"))
    assert "x0" in first_block and "DRIFT" in first_block
    tablet = next(line for line in lines if "tablet-with-a-long-name" in line)
    phone = next(line for line in lines if "│ phone" in line)
    assert "DRIFT" in tablet and "x0" in tablet
    assert "no drift" in phone


def test_monitor_drift_plot_writes_a_png(env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "plots" / "drift.png"

    result = CliRunner().invoke(
        cli,
        ["monitor", "drift", "digits", "--until", UNTIL, "--plot", str(target), "--top", "2"],
        env=env,
    )

    assert result.exit_code == 0, result.output
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 10_000
    assert f"wrote {target}" in result.output.replace("\n", "")


def test_a_plot_path_that_cannot_be_written_is_a_user_error(
    env: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    result = CliRunner().invoke(
        cli,
        ["monitor", "drift", "digits", "--until", UNTIL, "--plot", str(blocker / "drift.png")],
        env=env,
    )

    # main() turns InvalidInput into exit code 2 with its message (tests/cli/test_cli.py)
    assert isinstance(result.exception, InvalidInput), result.output
    assert "cannot write the plot" in str(result.exception)


def test_monitor_accuracy_fits_80_columns_per_device_class(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        cli, ["monitor", "accuracy", "digits", "--until", UNTIL, "--window", "6h"], env=env
    )

    assert result.exit_code == 0, result.output
    assert _widest(result.output) <= 80
    assert "reference accuracy 70." in " ".join(result.output.split())
    for name in ("fleet", "phone", "tablet-with-a-long-name"):
        assert any(line.startswith(f"│ {name} ") for line in result.output.splitlines()), name
    assert "no labels" in result.output  # no feedback yet: nothing to compare with


def test_monitor_drift_of_an_unknown_model_exits_with_the_servers_message(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        main(["monitor", "drift", "faces", "--until", UNTIL])

    assert exited.value.code == 2
    assert "faces" in capsys.readouterr().err


def test_monitor_drift_json_of_the_fleet_only_is_the_reports_json(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        cli,
        ["monitor", "drift", "digits", "--until", UNTIL, "--group-by", "", "--json"],
        env=env,
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["group_by"] == [] and [g["labels"] for g in report["groups"]] == [{}]
    assert report["fleet"]["state"] == "drift" and report["fleet"]["n"] == 3600
