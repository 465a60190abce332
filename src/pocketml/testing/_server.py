"""A real pocketml server for tests: ``create_app(settings)`` served by uvicorn on loopback.

Every server test needs the same three things: settings with a per-test home and a known
operator token, the app served on 127.0.0.1 and a free port (``serve_in_thread``: it waits
for uvicorn's startup event, no sleeps), and clients that carry a token. They live here
once, for pocketml's own tests and for users testing code that talks to a server.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from pocketml.config import ServerSettings, Settings
from pocketml.server.background import serve_in_thread
from pocketml.server.client import AdminClient
from pocketml.server.schemas import VersionPublic
from pocketml.testing._push import DIGITS_SCHEMA, Variant, push_version

__all__ = [
    "OPERATOR_TOKEN",
    "AppKeys",
    "LiveServer",
    "fresh_postgres",
    "live_server",
    "server_settings",
]

OPERATOR_TOKEN = "pml_op_pocketml-testing-operator-token"
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AppKeys:
    """An app made for a test: its id, admin token, device key and public keys."""

    app_id: str
    admin_token: str
    device_key: str
    public_keys: dict[str, str]


@dataclass(frozen=True)
class LiveServer:
    """A running server: its URL, its settings, and clients for it."""

    url: str
    settings: Settings

    @property
    def operator_token(self) -> str:
        """The operator token the server was started with."""
        token = self.settings.operator_token
        return token.get_secret_value() if token is not None else ""

    def http(self, token: str | None = None) -> httpx.Client:
        """An httpx client for this server, with a bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=_TIMEOUT_S)

    def admin(self, token: str | None = None) -> AdminClient:
        """An AdminClient for this server (the operator's when no token is given)."""
        return AdminClient(self.url, token or self.operator_token, timeout=_TIMEOUT_S)

    def create_app(self, name: str) -> AppKeys:
        """Create an app through the operator API; returns its keys."""
        with self.admin() as client:
            created = client.create_app(name)
        return AppKeys(
            created.app.id, created.admin_token, created.device_key, created.app.public_keys
        )

    def push(
        self,
        app: AppKeys,
        model: str,
        variants: Sequence[Variant],
        *,
        schema: Mapping[str, Any] | None = None,
        stage: str | None = "production",
        force: bool = False,
    ) -> VersionPublic:
        """Push a version of ``model`` as ``app``'s admin and set its stage.

        The model is created first when it does not exist, with ``schema`` (default:
        ``DIGITS_SCHEMA`` under the model's name). ``force`` pushes files that an existing
        version already has (otherwise a Conflict). See ``push_version``.
        """
        with self.admin(app.admin_token) as client:
            return push_version(
                client,
                model,
                variants,
                schema=schema or {**DIGITS_SCHEMA, "name": model},
                stage=stage,
                force=force,
            )


def server_settings(
    home: Path,
    database_url: str | None = None,
    *,
    operator_token: str = OPERATOR_TOKEN,
    server: ServerSettings | None = None,
    **server_fields: Any,
) -> Settings:
    """Settings of a test server: its own home, a database, a known operator token.

    Args:
        home: the server's home directory (SQLite database and artifacts by default).
        database_url: a SQLAlchemy URL; default: SQLite under ``home``.
        operator_token: the operator's bearer token.
        server: the server section; default ``ServerSettings(**server_fields)``.
        server_fields: fields of ``ServerSettings``, a group as a mapping or a model (e.g.
            ``limits={"max_upload_mb": 1}``, ``devices={"catalog_ttl_s": 0}``); this is
            how a test sets any option of the server, as an operator would.
    """
    return Settings(
        home=home,
        database_url=database_url,
        operator_token=SecretStr(operator_token),
        server=server or ServerSettings(**server_fields),
    )


@contextmanager
def fresh_postgres(admin_url: str, *, migrated: bool = False) -> Iterator[str]:
    """A new PostgreSQL database on ``admin_url``'s server, dropped when the block ends.

    How pocketml's tests (and conformance runners of other clients, through
    ``conformance/serve.py --postgres``) run on PostgreSQL without seeing each other's rows.

    Args:
        admin_url: a SQLAlchemy URL of a role that may ``CREATE DATABASE``.
        migrated: start at the schema's head instead of empty. The database is copied
            (``CREATE DATABASE ... TEMPLATE``, ~0.05 s) from a template migrated once per
            set of migration files (~0.6 s), which a server would otherwise migrate again
            for every test; it is the same schema, since the template's name is a digest
            of the migration files.

    Yields:
        The URL of the new database.

    Raises:
        sqlalchemy.exc.OperationalError: the server does not answer (callers that were told
            to use PostgreSQL fail on it rather than skip).
    """
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"pocketml_t_{uuid.uuid4().hex[:12]}"
    try:
        template = _migrated_template(admin, admin_url) if migrated else None
        with admin.connect() as conn:
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(sa.text(f'CREATE DATABASE "{name}"{suffix}'))
    except BaseException:
        admin.dispose()
        raise
    url = sa.engine.make_url(admin_url).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


_TEMPLATE_PREFIX = "pocketml_tpl_"
_TEMPLATE_LOCK = 0x706B746D6C  # pg_advisory_lock key: one process builds a template at a time


def _migrations_digest() -> str:
    from pocketml.db import migrations

    folder = Path(migrations.__file__).resolve().parent / "versions"
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _migrated_template(admin: sa.Engine, admin_url: str) -> str:
    """The name of a database at the schema's head to copy from; built on first use.

    Processes (pytest-xdist workers) serialize on an advisory lock; the template is built
    under a temporary name and renamed when complete, so a copy never sees half a schema.
    Its name is ``pocketml_tpl_<digest of the migration files>_<UTC day built>``. Another
    checkout with other migrations may be testing on the same server at the same time,
    so another digest's template is dropped only once it is two days old.
    """
    from pocketml.db import run_migrations

    today = int(time.time() // 86_400)
    mine = f"{_TEMPLATE_PREFIX}{_migrations_digest()}_"
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _TEMPLATE_LOCK})
        try:
            existing = conn.execute(
                sa.text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                {"p": _TEMPLATE_PREFIX + "%"},
            ).scalars()
            for other in existing:
                built = other.removeprefix(_TEMPLATE_PREFIX).split("_")
                if other.startswith(mine) and not other.endswith("_building"):
                    return str(other)
                stale = other.endswith("_building") and other.startswith(mine)  # a killed build
                old = len(built) < 2 or not built[1].isdigit() or int(built[1]) < today - 1
                if stale or old:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{other}"'))
            name = f"{mine}{today}"
            building = f"{name}_building"
            conn.execute(sa.text(f'CREATE DATABASE "{building}"'))
            engine = sa.create_engine(sa.engine.make_url(admin_url).set(database=building))
            try:
                run_migrations(engine)
            finally:
                engine.dispose()
            conn.execute(sa.text(f'ALTER DATABASE "{building}" RENAME TO "{name}"'))
            return name
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _TEMPLATE_LOCK})


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Serve ``create_app(settings)`` on 127.0.0.1 and a free port until the block ends.

    Example::

        with live_server(server_settings(tmp_path / "home")) as live:
            app = live.create_app("my-app")

    Args:
        settings: see ``server_settings``; the only way to set the server's options.

    Raises:
        Unavailable: the server did not start.
    """
    with serve_in_thread(settings) as url:
        yield LiveServer(url, settings)
