"""The ``pocketml`` command line: one Typer sub-command group per lifecycle stage.

``main`` is the entry point. It maps every ``PocketMLError`` to a one-paragraph message
and exit code 2, an unexpected exception to exit code 1 with a hint, and shows the
traceback only with ``--debug``.
"""

from __future__ import annotations

import logging
import sys

import typer

from pocketml._native import native_output_silenced
from pocketml._version import __version__
from pocketml.cli import (
    _admin,
    _alerts,
    _build,
    _convert,
    _data,
    _demo,
    _federated,
    _loop,
    _monitor,
    _rollout,
    _samples,
    _server,
    _simulate,
    _telemetry,
    _train,
)
from pocketml.cli._common import err_console
from pocketml.errors import PocketMLError

__all__ = ["app", "main"]

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1

app = typer.Typer(
    name="pocketml",
    help="Build, ship, run and monitor machine-learning models inside mobile apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(_data.app, name="data")
app.command("train")(_train.train)
app.command("convert")(_convert.convert)
app.command("import")(_convert.import_model)
app.command("build")(_build.build)
app.command("optimize")(_build.optimize)
app.command("bench")(_build.bench)
app.add_typer(_rollout.rollout_app, name="rollout")
app.add_typer(_rollout.experiment_app, name="experiment")
app.add_typer(_alerts.alerts_app, name="alerts")
app.add_typer(_loop.loop_app, name="loop")
app.add_typer(_federated.fl_app, name="fl")
app.command("simulate")(_simulate.simulate)
app.command("demo")(_demo.demo)
app.command("server")(_server.server)
app.add_typer(_telemetry.app, name="telemetry")
app.add_typer(_monitor.app, name="monitor")
app.add_typer(_samples.app, name="samples")
app.add_typer(_admin.app_app, name="app")
app.command("push")(_admin.push)
app.add_typer(_admin.models_app, name="models")
app.add_typer(_admin.versions_app, name="versions")

# Commands that convert, quantize or benchmark in the CLI's one thread: native libraries'
# C++ chatter is discarded there (pocketml._native). Never "server": request threads log.
QUIET_NATIVE_COMMANDS = frozenset({"convert", "import", "build", "optimize", "bench", "demo"})


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"pocketml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show info logs."),
) -> None:
    """pocketml: the open, self-hosted lifecycle for on-device machine learning."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if ctx.invoked_subcommand in QUIET_NATIVE_COMMANDS:
        ctx.with_resource(native_output_silenced())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the ``pocketml`` console script calls this."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        app(args=args, prog_name="pocketml", standalone_mode=True)
    except PocketMLError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]Error:[/bold red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("Interrupted.")
        sys.exit(130)
    except Exception as exc:  # an unexpected failure is a bug: say so, hide the traceback
        if debug:
            raise
        err_console.print(
            f"[bold red]Internal error:[/bold red] {type(exc).__name__}: {exc}\n"
            "This is a bug in pocketml. Run again with --debug for the traceback and "
            "report it with that output.",
            highlight=False,
        )
        sys.exit(EXIT_INTERNAL_ERROR)
