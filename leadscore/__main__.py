"""``python -m leadscore`` runs the command line."""

from leadscore.cli import run

run()
