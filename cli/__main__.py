"""`python -m cli` runs the chatapp command line."""

from cli.main import app

app()
