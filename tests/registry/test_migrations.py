"""Migrations and database plumbing, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import pocketml.delivery._orm
import pocketml.federated._orm
import pocketml.loop._orm
import pocketml.loop._samples_orm
import pocketml.monitor._orm
import pocketml.monitor.alerts._orm
import pocketml.telemetry._orm  # noqa: F401
from pocketml.db import (
    VERSION_TABLE,
    Base,
    create_engine,
    current_revision,
    head_revision,
    run_migrations,
)
from pocketml.errors import InvalidInput, Unavailable
from pocketml.protect import MasterKey
from pocketml.registry import LocalArtifactStore, Registry, migrate_database

TABLES = {"apps", "app_keys", "models", "model_versions", "variants"}


def test_migrations_upgrade_an_empty_database_to_head(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        assert current_revision(engine) is None
        run_migrations(engine)
        assert current_revision(engine) == head_revision()
        assert TABLES | {VERSION_TABLE} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations_are_idempotent_and_keep_data(
    database_url: str, tmp_path: Path, master_key: MasterKey
) -> None:
    artifacts = LocalArtifactStore(tmp_path / "a")
    with Registry(database_url, artifacts, master_key) as registry:
        app = registry.create_app("kept").app
    with Registry(database_url, artifacts, master_key) as registry:
        assert registry.get_app(app.id) == app
        assert current_revision(registry.store.engine) == head_revision()


def test_migrate_database_upgrades_and_reports_the_revision(database_url: str) -> None:
    assert migrate_database(database_url) == head_revision()
    assert migrate_database(database_url) == head_revision()


def test_the_migrations_create_exactly_the_orm_schema(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(database_url)
    try:
        run_migrations(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            pragma = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}


def test_listing_versions_uses_the_model_version_index(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        run_migrations(engine)
        with engine.connect() as conn:
            plan = " ".join(
                str(row[-1])
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT * FROM model_versions WHERE model_id = 'm' "
                    "AND stage = 'candidate' ORDER BY version DESC LIMIT 50"
                )
            )
    finally:
        engine.dispose()
    assert "USING INDEX ix_model_versions_model_id_stage_version" in plan
    assert "TEMP B-TREE" not in plan  # the index also gives the order: no sort step


@pytest.mark.parametrize("url", ["mysql://x/y", "not a url"])
def test_unsupported_database_urls_are_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput, match=r"database URL|SQLite or PostgreSQL"):
        create_engine(url)


def test_an_unreachable_database_is_unavailable(tmp_path: Path, master_key: MasterKey) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"
    registry = Registry(url, LocalArtifactStore(tmp_path / "a"), master_key)
    with pytest.raises(Unavailable, match="POCKETML_DATABASE_URL"):
        registry.open()


def test_a_closed_registry_says_to_open_it(tmp_path: Path, master_key: MasterKey) -> None:
    registry = Registry("sqlite://", LocalArtifactStore(tmp_path / "a"), master_key)
    with pytest.raises(Unavailable, match=r"open\(\)"):
        registry.list_apps()
