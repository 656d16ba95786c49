"""``python -m bucketchat`` runs the command line."""

from bucketchat.cli.main import run

run()
