"""``pocketml telemetry metrics|export``: what the fleet reported, and Parquet on demand.

``metrics MODEL`` asks a server for the model's aggregates per (version, device class)
and prints them as a table: inferences, errors, latency p50/p95, cloud and fallback
share, mean confidence and accuracy from feedback.

``export`` writes stored telemetry to Parquet now. The server exports in the background
(``POCKETML_SERVER__TELEMETRY_EXPORT__INTERVAL_S``); this command is for servers that run
with it turned off, and for a last export after a crash. It uses the same database
lease, so it never exports what a server is exporting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer

from pocketml._tables import Column
from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_table
from pocketml.errors import InvalidInput

__all__ = ["app"]

app = typer.Typer(help="Device telemetry stored by the server.", no_args_is_help=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command("metrics")
def metrics(
    model: str = typer.Argument(..., help="The model's name, e.g. digits."),
    hours: float | None = typer.Option(
        None, "--hours", min=0.0, help="Only the last HOURS hours (default: everything)."
    ),
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Aggregates of a model's telemetry per version and device class."""
    if hours is not None and hours <= 0:
        raise InvalidInput("--hours must be positive, e.g. --hours 24.")
    since = None
    if hours is not None:
        since = (datetime.now(UTC) - timedelta(hours=hours)).timestamp()
    with _client(server, token) as client:
        groups = client.model_metrics(model, since=since)["groups"]
    if not groups:
        console.print(f"no telemetry for {model} yet", highlight=False)
        return
    print_table(
        f"{model}: telemetry per version and device class",
        [
            Column("version", is_name=True),
            Column("device class", is_name=True),
            Column("inferences", "right"),
            Column("errors", "right"),
            Column("p50 ms", "right", priority=3),
            Column("p95 ms", "right"),
            Column("cloud", "right", priority=2),
            Column("fallback", "right", priority=4),
            Column("confidence", "right", priority=1),
            Column("accuracy (n)", "right"),
        ],
        [
            (
                f"v{g['version']}" if g["version"] is not None else "-",
                g["device_class"] or "-",
                f"{g['count']:,}",
                f"{g['errors']:,}",
                _num(g["latency_p50_ms"]),
                _num(g["latency_p95_ms"]),
                _pct(g["cloud_share"]),
                _pct(g["fallback_share"]),
                _num(g["mean_confidence"], 3),
                f"{_pct(g['accuracy'])} ({g['feedback_count']:,})",
            )
            for g in groups
        ],
    )


@app.command("export")
def export() -> None:
    """Export telemetry not yet in Parquet to <home>/telemetry/app=<id>/date=<day>/."""
    from pocketml.config import Settings
    from pocketml.telemetry import export_database

    settings = Settings()
    root = settings.home / "telemetry"
    events = export_database(settings.resolved_database_url, root)
    console.print(f"exported {events:,} events to {root}", highlight=False)
