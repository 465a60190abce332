"""``python -m pocketml`` runs the CLI."""

from pocketml.cli import main

main()
