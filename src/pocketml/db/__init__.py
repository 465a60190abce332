"""pocketml.db: the database layer every service stores its rows on.

One database (SQLite file by default, PostgreSQL for several replicas) holds the tables
of the registry, delivery and telemetry. This package is what they share, so no service
reaches into another's private modules for it:

- :func:`create_engine` (SQLite pragmas and explicit transactions, psycopg 3 for
  PostgreSQL), :data:`WRITE` (execution options of a write connection) and
  :func:`translate_errors` (SQLAlchemy errors -> ``Conflict`` / ``Unavailable``);
- :class:`Base` (the declarative base with its naming convention) and the shared column
  types :class:`UTCDateTime`, :data:`JSONDict`, :data:`BIGINT_PK`; :func:`utcnow`;
- the Alembic migrations (``pocketml/db/migrations``): :func:`run_migrations`,
  :func:`migrate_database`, :func:`current_revision`, :func:`head_revision`;
- :class:`Lease` (one replica at a time runs a background job) with its owner ids
  (:func:`process_owner`, :func:`claim_home_identity`), and :func:`run_periodically`,
  the loop every background job runs in.
"""

from pocketml.db._base import BIGINT_PK, Base, JSONDict, UTCDateTime, utcnow
from pocketml.db._engine import WRITE, create_engine, translate_errors
from pocketml.db._lease import Lease, LeaseHolder
from pocketml.db._migrate import (
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    migrate_database,
    run_migrations,
)
from pocketml.db._owner import HomeIdentity, claim_home_identity, process_owner
from pocketml.db._runner import run_periodically

__all__ = [
    "BIGINT_PK",
    "VERSION_TABLE",
    "WRITE",
    "Base",
    "HomeIdentity",
    "JSONDict",
    "Lease",
    "LeaseHolder",
    "UTCDateTime",
    "alembic_config",
    "claim_home_identity",
    "create_engine",
    "current_revision",
    "head_revision",
    "migrate_database",
    "process_owner",
    "run_migrations",
    "run_periodically",
    "translate_errors",
    "utcnow",
]
