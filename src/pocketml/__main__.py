"""``python -m pocketml`` runs the CLI (or says which extra installs it)."""

from pocketml._launch import main

main()
