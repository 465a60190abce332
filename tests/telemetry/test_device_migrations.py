"""The migrations create exactly the ORM tables of delivery and telemetry."""

from __future__ import annotations

import sqlalchemy as sa

import pocketml.delivery._orm
import pocketml.loop._samples_orm
import pocketml.telemetry._orm  # noqa: F401  (registers the tables on Base.metadata)
from pocketml.db import (
    VERSION_TABLE,
    Base,
    create_engine,
    current_revision,
    head_revision,
    run_migrations,
)

NEW_TABLES = {
    "version_policies",
    "telemetry_batches",
    "telemetry_chunks",
    "telemetry_exports",
    "feedback",
}


def test_the_migrations_create_exactly_the_orm_schema_with_device_tables(
    empty_database_url: str,
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = create_engine(empty_database_url)
    try:
        run_migrations(engine)
        assert current_revision(engine) == head_revision()
        assert set(sa.inspect(engine).get_table_names()) >= NEW_TABLES
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrading_to_0001_drops_only_the_device_tables(empty_database_url: str) -> None:
    from alembic import command

    from pocketml.db import alembic_config

    engine = create_engine(empty_database_url)
    try:
        run_migrations(engine)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        tables = set(sa.inspect(engine).get_table_names())
        assert not NEW_TABLES & tables and "model_versions" in tables
    finally:
        engine.dispose()
