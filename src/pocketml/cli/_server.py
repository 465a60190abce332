"""``pocketml server``: run the control plane with uvicorn.

Settings come from ``POCKETML_*`` variables (``load_settings()``: a malformed or unknown
variable stops the start with its name; an old flat name is read with a warning naming the
new one); ``--host``/``--port`` override ``POCKETML_SERVER__HOST``/``POCKETML_SERVER__PORT``.
With ``--reload`` uvicorn imports the app factory by name
(``pocketml.server.app:create_app_from_env``) so it can restart it.
"""

from __future__ import annotations

import logging

import typer

from pocketml.cli._common import console
from pocketml.errors import MissingDependencyError

__all__ = ["server"]


def server(
    host: str | None = typer.Option(
        None, "--host", help="Interface to bind (default POCKETML_SERVER__HOST or 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="TCP port (default POCKETML_SERVER__PORT, 8000)."
    ),
    reload: bool = typer.Option(False, "--reload", help="Restart on code changes (development)."),
    access_log: bool = typer.Option(
        True,
        "--access-log/--no-access-log",
        help="Log one line per request. Off for high request rates: at ~15k req/s the log "
        "line costs about a tenth of a predict call; the load balancer usually logs anyway.",
    ),
) -> None:
    """Run the pocketml server (registry admin API, package delivery, dashboard at /ui)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", "server", "to run the server") from exc
    from pocketml.config import load_settings
    from pocketml.server import uvicorn_options

    settings = load_settings()
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    logging.getLogger("pocketml").setLevel(logging.INFO)
    console.print(
        f"pocketml server on http://{bind_host}:{bind_port or '<a free port, below>'} "
        f"(home {settings.home}); "
        f"dashboard at /ui, API docs at /docs. The operator token is in "
        f"{settings.home / 'operator.token'} unless POCKETML_OPERATOR_TOKEN is set.",
        highlight=False,
    )
    if reload:
        uvicorn.run(
            "pocketml.server.app:create_app_from_env",
            factory=True,
            host=bind_host,
            port=bind_port,
            reload=True,
            access_log=access_log,
            server_header=False,
            **uvicorn_options(settings.server.limits),
        )
        return
    from pocketml.server.app import create_app

    # No "server: uvicorn" header: it tells a scanner the stack and costs a header per reply.
    uvicorn.run(
        create_app(settings),
        host=bind_host,
        port=bind_port,
        access_log=access_log,
        server_header=False,
        **uvicorn_options(settings.server.limits),  # a bounded request head, whichever parser
    )
