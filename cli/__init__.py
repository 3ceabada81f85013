"""The `chatapp` command line (typer): serve, init and the operator's commands."""
