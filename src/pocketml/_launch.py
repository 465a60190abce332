"""The ``pocketml`` console script: the CLI, or the pip command that installs it.

``pip install 'pocketml[device]'`` installs the console script too, but not the CLI's
dependencies (typer, rich, pydantic, pydantic-settings): running ``pocketml`` there must
say what to install, not print an ImportError traceback.
"""

from __future__ import annotations

import sys

from pocketml.errors import MissingDependencyError

__all__ = ["main"]

_CLI_DEPENDENCIES = frozenset(
    {"typer", "click", "rich", "pydantic", "pydantic_core", "pydantic_settings", "httpx"}
)


def main() -> None:
    """Run the CLI; without the ``cli`` extra, print how to install it and exit 2."""
    try:
        from pocketml.cli import main as cli_main
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _CLI_DEPENDENCIES:
            raise
        error = MissingDependencyError(missing, "cli", "to run the pocketml command")
        sys.stderr.write(f"{error}\n")
        raise SystemExit(2) from None
    cli_main()
