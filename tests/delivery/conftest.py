"""Fixtures of the delivery tests: a live server (SQLite and PostgreSQL) and an app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from device_kit import AppKeys, DeviceServer, serve_device_app


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[DeviceServer]:
    """A real server with the check-in cache off (every check-in sees the database)."""
    with serve_device_app(tmp_path / "home", database_url) as live:
        yield live


@pytest.fixture
def app_keys(server: DeviceServer) -> AppKeys:
    """An app of the live server."""
    return server.create_app("app-a")
