"""A live server shared by one test module, on SQLite and on PostgreSQL.

Starting a server per test costs a database (on PostgreSQL: create, migrate, drop), the
app's start-up and its shutdown: about a second, which a module of 30 short request tests
pays 30 times per database. Where every test works inside an app of its own (apps are
separate tenants: models, versions, devices, telemetry and rollouts never cross), one
server per module and database keeps the tests isolated and pays that once.

A module opts in with a module-scoped fixture made by ``shared_server_fixture``::

    server = shared_server_fixture(devices={"catalog_ttl_s": 0})

and gives each test a new app (``unique_app_name``), never a fixed name.

``postgres_test_database`` is the one rule for a test database on PostgreSQL (tests/conftest.py's
``postgres_url`` uses it too): skipped when ``POCKETML_TEST_DATABASE_URL`` is unset, failed
when it is set and the server does not answer.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from pocketml.testing import LiveServer, fresh_postgres, live_server, server_settings

__all__ = [
    "DATABASES",
    "module_server",
    "postgres_test_database",
    "shared_server_fixture",
    "unique_app_name",
]

DATABASES = ["sqlite", "postgresql"]
PG_ENV = "POCKETML_TEST_DATABASE_URL"
_names = itertools.count()


def unique_app_name(prefix: str = "app") -> str:
    """An app name no other test of this process used (app names are unique per server)."""
    return f"{prefix}-{next(_names)}"


@contextmanager
def postgres_test_database(*, migrated: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database (``pocketml.testing.fresh_postgres``), dropped afterwards.

    At the schema's head (copied from a migrated template) unless ``migrated`` is False:
    tests of the migrations themselves ask for an empty one.
    Skips when ``POCKETML_TEST_DATABASE_URL`` is unset; set but unreachable, it fails.
    """
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"{PG_ENV} is not set")
    import sqlalchemy as sa

    with ExitStack() as stack:
        try:
            url = stack.enter_context(fresh_postgres(admin_url, migrated=migrated))
        except sa.exc.OperationalError as exc:  # set but unreachable: fail, never skip
            pytest.fail(f"{PG_ENV} is set but PostgreSQL does not answer: {exc}")
        yield url


_sqlite_template: Path | None = None


def migrated_sqlite(path: Path) -> str:
    """A SQLite file at ``path`` already at the schema's head; returns its URL.

    Copied from a file this process migrated once (a migration is ~0.25 s per database,
    paid by every server test otherwise; the same trade as PostgreSQL's template).
    """
    global _sqlite_template
    if _sqlite_template is None:
        from pocketml.db import migrate_database

        template = Path(tempfile.mkdtemp(prefix="pocketml-sqlite-template-")) / "registry.db"
        migrate_database(f"sqlite:///{template}")  # disposes its engine: no -wal file left
        _sqlite_template = template
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@contextmanager
def module_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    **server_fields: Any,
) -> Iterator[LiveServer]:
    """A live server on ``request.param``'s database, with ``server_fields`` set."""
    home = tmp_path_factory.mktemp("module-server")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = migrated_sqlite(home / "registry.db")
        else:
            url = stack.enter_context(postgres_test_database())
        settings = server_settings(home / "home", url, **server_fields)
        yield stack.enter_context(live_server(settings))


def shared_server_fixture(**server_fields: Any) -> Any:
    """A module-scoped fixture: one live server per database, with ``server_fields`` set."""

    @pytest.fixture(scope="module", params=DATABASES)
    def server(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[LiveServer]:
        """One server per database for this module: every test works in an app of its own."""
        with module_server(request, tmp_path_factory, **server_fields) as live:
            yield live

    return server
