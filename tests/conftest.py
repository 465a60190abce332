"""Fixtures every test shares: isolated environment and home, databases to run against.

- Every test gets its own ``POCKETML_HOME`` and no leaked ``POCKETML_*`` variables
  (STYLE.md rule 21).
- ``database_url`` is parametrised over SQLite and, when ``POCKETML_TEST_DATABASE_URL`` is
  set, PostgreSQL. With the variable set and the server down, tests fail instead of
  skipping. Each PostgreSQL test gets a fresh database created for it and dropped after,
  so concurrent runs never see each other's rows. Both start at the schema's head, copied
  from a template migrated once (``empty_database_url`` is for tests of the migrations).
- The fixtures of ``pocketml.testing.fixtures`` (``live_server``, ``pocketml_app``) run on
  ``database_url``, so every live-server test runs on both databases.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared_server import migrated_sqlite, postgres_test_database

PG_ENV = "POCKETML_TEST_DATABASE_URL"
pytest_plugins = ["pocketml.testing.fixtures"]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clear POCKETML_* variables and point POCKETML_HOME at a fresh directory."""
    for name in list(os.environ):
        if name.startswith("POCKETML_") and name != PG_ENV:
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "pocketml-home"
    home.mkdir()
    monkeypatch.setenv("POCKETML_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def unfreeze_gc() -> Iterator[None]:
    """Undo the ``gc.freeze()`` of servers started in-process, so their garbage is freed."""
    yield
    gc.unfreeze()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database at the schema's head for one test; dropped afterwards."""
    with postgres_test_database() as url:
        yield url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (for tests of the migrations); dropped afterwards."""
    with postgres_test_database(migrated=False) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs once on a SQLite file and once on PostgreSQL (both migrated)."""
    if request.param == "sqlite":
        return migrated_sqlite(tmp_path / "registry.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on SQLite and on PostgreSQL, for tests of the migrations."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


@pytest.fixture
def pocketml_database_url(database_url: str) -> str:
    """``live_server`` runs on ``database_url`` (SQLite, then PostgreSQL)."""
    return database_url
