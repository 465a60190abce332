"""Fixtures of the delivery tests: a live server (SQLite and PostgreSQL) and an app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketml.testing import AppKeys, LiveServer, live_server, server_settings
from shared_server import unique_app_name


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    """A real server with the check-in cache off (every check-in sees the database)."""
    settings = server_settings(tmp_path / "home", database_url, devices={"catalog_ttl_s": 0})
    with live_server(settings) as live:
        yield live


@pytest.fixture
def app_keys(server: LiveServer) -> AppKeys:
    """An app of the live server."""
    return server.create_app(unique_app_name("app-a"))
