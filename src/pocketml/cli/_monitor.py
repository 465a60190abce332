"""``pocketml monitor drift|accuracy MODEL``: the drift and accuracy reports of a server.

Thin over the admin API (``AdminClient.drift`` / ``.accuracy``): the commands parse options,
ask the server, and print tables fitted to the terminal (``pocketml._tables``; names are
never cut, the least important columns go first at 80 columns and the caption says which).

``drift`` prints the fleet's verdict, its blocks most drifted first with the decision of
each, and one line per group; ``--plot PATH`` writes a PNG of reference vs current
histograms (shares per bin) of the most drifted features, with matplotlib's Agg backend
(no display needed; matplotlib comes with ``pocketml[build]``).
``accuracy`` prints estimated vs realised accuracy with their intervals per group.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pocketml.cli._admin import ServerOption, TokenOption, _client
from pocketml.cli._common import console, print_json
from pocketml.server.monitor_views import accuracy_table, drift_tables, plot_histograms

__all__ = ["app"]

app = typer.Typer(help="Drift and accuracy of a model's versions, from device sketches.")


VersionOption = typer.Option(
    None, "--version", min=1, help="The version (default: production, else the newest reporting)."
)
WindowOption = typer.Option("24h", "--window", help="Seconds, or 90m / 24h / 7d (1h..90d).")
DeviceClassOption = typer.Option(None, "--device-class", help="Only this device class.")
AppVersionOption = typer.Option(None, "--app-version", help="Only this app version.")
GroupByOption = typer.Option(
    "device_class", "--group-by", help='device_class, app_version, both (comma list) or "".'
)
JsonOption = typer.Option(False, "--json", help="Print the report as JSON.")
UntilOption = typer.Option(
    None, "--until", min=0, help="The window's end, unix seconds (default: now)."
)


@app.command("drift")
def drift(
    model: str = typer.Argument(..., help="The model's name, e.g. digits."),
    version: int | None = VersionOption,
    window: str = WindowOption,
    until: float | None = UntilOption,
    device_class: str | None = DeviceClassOption,
    app_version: str | None = AppVersionOption,
    group_by: str = GroupByOption,
    baseline: str = typer.Option(
        "reference", "--baseline", help="reference (the version's profile) or previous."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a PNG of the most drifted features' histograms here."
    ),
    top: int = typer.Option(4, "--top", min=1, max=12, help="Features in the plot."),
    as_json: bool = JsonOption,
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Has the input of a model version drifted? Per feature and device class."""
    with _client(server, token) as client:
        report = client.drift(
            model,
            version=version,
            window=window,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=group_by,
            baseline=baseline,
        )
    if as_json:
        print_json(report.model_dump())
    else:
        for table in drift_tables(report, console.width):
            console.print(table)
    if plot is not None:
        written = plot_histograms(report, plot, top)
        console.print(f"wrote {written}", highlight=False)


@app.command("accuracy")
def accuracy(
    model: str = typer.Argument(..., help="The model's name, e.g. digits."),
    version: int | None = VersionOption,
    window: str = WindowOption,
    until: float | None = UntilOption,
    device_class: str | None = DeviceClassOption,
    app_version: str | None = AppVersionOption,
    group_by: str = GroupByOption,
    as_json: bool = JsonOption,
    server: str = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Estimated (from confidence) vs realised (from labels) accuracy, per device class."""
    with _client(server, token) as client:
        report = client.accuracy(
            model,
            version=version,
            window=window,
            until=until,
            device_class=device_class,
            app_version=app_version,
            group_by=group_by,
        )
    if as_json:
        print_json(report.model_dump())
        return
    console.print(accuracy_table(report, console.width))
