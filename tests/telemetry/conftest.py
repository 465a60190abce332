"""Fixtures of the telemetry tests: a live server (SQLite + PostgreSQL) and an app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))

from device_kit import TINY_SCHEMA, AppKeys, DeviceServer, serve_device_app


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[DeviceServer]:
    """A live server that accepts at most 50 events per batch; Parquet export on demand."""
    with serve_device_app(
        tmp_path / "home",
        database_url,
        max_telemetry_events=50,
        telemetry_export_interval_s=0,
    ) as live:
        yield live


@pytest.fixture
def app_keys(server: DeviceServer) -> AppKeys:
    """An app with a 'digits' model (no versions needed for telemetry)."""
    app = server.create_app("telemetry")
    with server.admin(app.admin_token) as client:
        client.create_model("digits", schema=TINY_SCHEMA)
    return app
