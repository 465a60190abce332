"""pytest fixtures of ``pocketml.testing``: enable with ``pytest_plugins``.

In your top-level ``conftest.py``::

    pytest_plugins = ["pocketml.testing.fixtures"]

Then a test asks for ``live_server`` (a real server on 127.0.0.1 and a free port, built
from ``pocketml_settings``) and ``pocketml_app`` (an app on it). Override
``pocketml_database_url`` to run on another database (pocketml's own tests run every
server test on SQLite and on PostgreSQL that way), and ``pocketml_settings`` to set any
server option, as an operator's ``POCKETML_SERVER__*`` variables would::

    @pytest.fixture
    def pocketml_settings(tmp_path, pocketml_database_url):
        return server_settings(
            tmp_path / "home", pocketml_database_url, devices={"catalog_ttl_s": 0}
        )
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketml.config import Settings
from pocketml.testing._server import AppKeys, LiveServer, server_settings
from pocketml.testing._server import live_server as serve_live

__all__ = ["live_server", "pocketml_app", "pocketml_database_url", "pocketml_settings"]


@pytest.fixture
def pocketml_database_url(tmp_path: Path) -> str:
    """The database of ``live_server``: a SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'pocketml-server.db'}"


@pytest.fixture
def pocketml_settings(tmp_path: Path, pocketml_database_url: str) -> Settings:
    """The settings of ``live_server``: its own home, ``OPERATOR_TOKEN``, defaults."""
    return server_settings(tmp_path / "server-home", pocketml_database_url)


@pytest.fixture
def live_server(pocketml_settings: Settings) -> Iterator[LiveServer]:
    """A real pocketml server for one test, started from ``pocketml_settings``."""
    with serve_live(pocketml_settings) as live:
        yield live


@pytest.fixture
def pocketml_app(live_server: LiveServer) -> AppKeys:
    """An app "test-app" on ``live_server``: its id, admin token and device key."""
    return live_server.create_app("test-app")
