"""A fleet of virtual devices against a real server, and the ``pocketml simulate`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from pocketml.cli import _simulate
from pocketml.errors import InvalidInput
from pocketml.sim import demo_inputs, make_fleet, run_fleet


def test_make_fleet_cycles_device_classes_and_networks() -> None:
    fleet = make_fleet(6, ["wifi", "3g"], seed=10)

    assert [d.device_class for d in fleet][:5] == [
        "android-low",
        "android-mid",
        "android-high",
        "iphone",
        "edge-linux",
    ]
    assert [d.network for d in fleet] == ["wifi", "3g"] * 3
    assert [d.seed for d in fleet] == list(range(10, 16))


def test_an_empty_fleet_is_refused() -> None:
    with pytest.raises(InvalidInput, match="at least 1 device"):
        make_fleet(0, ["wifi"])


def test_a_fleet_syncs_predicts_and_reports_telemetry(
    shipped_url: tuple[str, str], tmp_path: Path
) -> None:
    url, key = shipped_url
    fleet = make_fleet(5, ["wifi", "lossy"], seed=1)

    report = run_fleet(url, key, fleet, demo_inputs(6), tmp_path, workers=2)

    totals = report.totals()
    assert sum(totals["predictions"].values()) == 30
    wifi = [d for d in report.devices if d.device.network == "wifi"]
    assert all(d.sync == "updated" for d in wifi)
    assert {d.variant for d in wifi} == {"nc-small-tflite-fp32", "nc-small-onnx-fp32"}
    assert totals["telemetry_sent"] >= 3 * 6  # every wifi device's inferences arrived
    assert totals["latency_p50_ms"] is not None


def test_the_simulate_command_prints_the_fleet_table(
    shipped_url: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, key = shipped_url
    monkeypatch.setattr(_simulate, "console", Console(width=200, record=True))
    app = typer.Typer()
    app.command()(_simulate.simulate)

    result = CliRunner().invoke(
        app,
        [
            "--devices",
            "2",
            "--network",
            "wifi,4g",
            "--predictions",
            "3",
            "--server",
            url,
            "--device-key",
            key,
        ],
    )

    assert result.exit_code == 0, result.output
    text = _simulate.console.export_text()
    assert "2 devices on wifi, 4g" in text and "dev-001" in text
    assert "synced 2/2" in text
