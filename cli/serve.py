"""`chatapp serve`: init if needed, start the engines and the gateway, say how to chat."""

from __future__ import annotations

import atexit
import errno
import logging
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler

from chatapp.errors import ChatAppError
from cli.common import ConfigOption, Setup, console, fail, load_setup
from cli.log_thread import LogThread

__all__ = ["serve"]


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [config].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [config: 8000].")] = None,
    engine_only: Annotated[
        bool,
        typer.Option(
            "--engine-only",
            help="Run only this node's engines (on PORT, PORT+1, …) for a gateway elsewhere.",
        ),
    ] = False,
) -> None:
    """Run the engines and the OpenAI-compatible gateway until Ctrl-C or SIGTERM."""
    # The server stack loads only for serve: every other command starts faster without it.
    import uvicorn

    from chatapp.bootstrap import initialize
    from cli.engine_node import serve_engines

    setup = load_setup(config)
    host = host or setup.config.server.host
    port = port or setup.config.server.port
    if engine_only:
        _configure_logging(setup.config.server.log_format, setup.config.server.log_level)
        serve_engines(setup.config, setup.home, host=host, base_port=port)
        return
    _check_port_free(host, port)
    url = f"http://{_display_host(host)}:{port}"
    try:
        init = initialize(setup.home, url=url, admin_key=os.environ.get("CHATAPP_ADMIN_KEY"))
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    log_thread = _configure_logging(setup.config.server.log_format, setup.config.server.log_level)
    from server.app import create_app  # the web stack loads only for serve

    try:
        app = create_app(
            setup.config,
            setup.home,
            on_ready=lambda: _print_ready(setup, url, init.new_key),
            # uvicorn ends the process on SIGTERM by raising the signal again: no atexit then.
            on_stopped=log_thread.flush,
        )
    except ChatAppError as exc:
        raise fail(str(exc)) from None
    console.print(f"chatapp: data in {setup.home}, config {setup.config.path}", highlight=False)
    console.print(
        f"chatapp: starting {len(setup.config.models)} model(s); the gateway answers "
        f"503 until they are loaded",
        highlight=False,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        # On SIGTERM: stop accepting, let streams in flight finish this long, then stop.
        timeout_graceful_shutdown=max(1, round(setup.config.server.drain_seconds)),
        lifespan="on",
    )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise fail(
                    f"port {port} on {host} is already in use: stop the other server or pass --port"
                ) from None
            raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _configure_logging(log_format: str = "text", level: str = "info") -> LogThread:
    """chatapp's log lines, each with its request's id: for people (rich) or JSON Lines,
    written by a thread of their own (cli/log_thread.py), never by the event loop."""
    from server.request_log import (
        AccessLines,
        JsonLines,
        RequestIdFilter,
        WithRequestId,
        access_log,
    )

    handlers: list[logging.Handler] = []
    if log_format == "json":
        lines = logging.StreamHandler(sys.stdout)
        lines.setFormatter(JsonLines())
        handlers.append(lines)
    else:
        people = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        people.setFormatter(WithRequestId())
        people.addFilter(lambda record: record.name != access_log.name)
        # One line a request: plain, since rich's layout would cost more than the request.
        access = logging.StreamHandler(sys.stdout)
        access.setFormatter(AccessLines())
        access.addFilter(lambda record: record.name == access_log.name)
        handlers += [people, access]
    thread = LogThread(*handlers, filters=[RequestIdFilter()])
    logger = logging.getLogger("chatapp")
    logger.setLevel(level.upper())
    thread.feed(logger)
    logger.propagate = False
    atexit.register(thread.stop)
    return thread


def _chatapp_command() -> str:
    """How this user runs chatapp: the script on PATH, or the full path of the one running now."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "chatapp" and shutil.which("chatapp") == str(argv0):
        return "chatapp"
    if argv0.name == "chatapp":
        return str(argv0.resolve())
    return f"{sys.executable} -m cli"


def _print_ready(setup: Setup, url: str, new_key: str | None) -> None:
    model = next(iter(setup.config.models))
    home_env = f"CHATAPP_HOME={setup.home} " if os.environ.get("CHATAPP_HOME") else ""
    lines = [
        "",
        f"[bold green]chatapp is ready[/] on {url}/v1 — models: {', '.join(setup.config.models)}",
    ]
    if new_key:
        lines.append(f"  Your admin API key (shown once, saved in {setup.home}/credentials.json):")
        lines.append(f"    [bold]{new_key}[/]")
    lines += [
        "  Chat with it from another terminal:",
        f"    export OPENAI_BASE_URL={url}/v1",
        f"    export OPENAI_API_KEY=$({home_env}{_chatapp_command()} key)",
        '    curl -N "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer '
        '$OPENAI_API_KEY" -H "Content-Type: application/json" \\',
        f'      -d \'{{"model": "{model}", "stream": true, "messages": '
        '[{"role": "user", "content": "Hello!"}]}\'',
        "  Any OpenAI SDK works with the same base URL and key. Stop with Ctrl-C.",
    ]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
