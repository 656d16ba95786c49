"""``python -m bucketchat`` runs the command line."""

from bucketchat.cli.main import run

if __name__ == "__main__":  # worker processes re-import the main module: never run it there
    run()
