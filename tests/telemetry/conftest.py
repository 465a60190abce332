"""Fixtures of the telemetry tests: a live server (SQLite + PostgreSQL) and an app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketml.testing import DIGITS_SCHEMA, AppKeys, LiveServer, live_server, server_settings


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A live server that accepts at most 50 events per batch; Parquet export on demand."""
    settings = server_settings(
        tmp_path / "home",
        database_url,
        limits={"max_telemetry_events": 50},
        telemetry_export={"interval_s": 0},
        devices={"catalog_ttl_s": 0},
    )
    with live_server(settings) as live:
        yield live


@pytest.fixture
def app_keys(server: LiveServer) -> AppKeys:
    """An app with a 'digits' model (no versions needed for telemetry)."""
    app = server.create_app("telemetry")
    with server.admin(app.admin_token) as client:
        client.create_model("digits", schema=DIGITS_SCHEMA)
    return app
