"""``pocketml telemetry export``: write stored telemetry to Parquet now.

The server exports in the background (``POCKETML_SERVER__TELEMETRY_EXPORT_INTERVAL_S``);
this command is for servers that run with it turned off, and for a last export after a
crash. It uses the same database lease, so it never exports what a server is exporting.
"""

from __future__ import annotations

from pocketml.cli._common import console

__all__ = ["app"]

import typer

app = typer.Typer(help="Device telemetry stored by the server.", no_args_is_help=True)


@app.command("export")
def export() -> None:
    """Export telemetry not yet in Parquet to <home>/telemetry/app=<id>/date=<day>/."""
    from pocketml.config import Settings
    from pocketml.telemetry import export_database

    settings = Settings()
    root = settings.home / "telemetry"
    events = export_database(settings.resolved_database_url, root)
    console.print(f"exported {events:,} events to {root}", highlight=False)
