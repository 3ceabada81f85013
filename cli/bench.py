"""`chatapp bench`: load any OpenAI-compatible server and print what it sustained.

Requests go over raw HTTP/1.1 (bench/timed_streams.py, a client that keeps up with hundreds of
streams where an SDK would not), `--concurrency` at a time, each with a fresh prompt so a
prefix cache cannot answer one from another. Needs a source checkout (`pip install -e .`),
since bench/ is not part of the wheel.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
import typer

from cli.client import Target, resolve_target
from cli.common import err_console, fail
from cli.output import Format, JsonOption, emit_record

__all__ = ["bench"]

PERCENTILES = (50, 95, 99)


def _models(target: Target) -> list[str]:
    """The server's model ids; every failure to get them becomes one line saying what to do."""
    url = target.url
    headers = {"authorization": f"Bearer {target.key}"} if target.key else {}
    try:
        answer = httpx.get(f"{url}/v1/models", headers=headers, timeout=10)
    except httpx.ConnectError:
        raise fail(
            f"cannot reach the server at {url}: start it with `chatapp serve` "
            "(or pass --url / set CHATAPP_URL)"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise fail(f"the server at {url} did not answer ({type(exc).__name__})") from None
    if answer.status_code == 401:
        raise fail("the server refused the key (pass --key or set CHATAPP_API_KEY)")
    if answer.status_code != 200:
        raise fail(f"GET {url}/v1/models answered {answer.status_code}: is it an OpenAI API?")
    try:
        return [str(card["id"]) for card in answer.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise fail(f"{url}/v1/models is not an OpenAI model list") from None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or seconds != seconds else round(seconds * 1000, 1)


def bench(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Model to load (default: the first).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight at once.")
    ] = 8,
    requests: Annotated[int, typer.Option("--requests", "-n", min=1, help="Requests in all.")] = 64,
    prompt_tokens: Annotated[
        int, typer.Option("--prompt-tokens", min=1, help="Prompt length (~4 characters a token).")
    ] = 128,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Answer length.")] = 128,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream/--no-stream",
            help="Streamed answers (TTFT and inter-token latency), or whole ones (TTFT is then "
            "the time to the whole answer).",
        ),
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Load a server (the global --url/--key) and print throughput, TTFT and inter-token latency."""
    try:  # lazily: `chatapp --help` and the other commands never pay for it
        from bench.load import run
        from bench.timed_streams import Shot, Spec, run_shots, stats
    except ImportError:
        raise fail("`chatapp bench` needs a source checkout: bench/ is not importable") from None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    root = ctx.find_root().obj
    target = root if isinstance(root, Target) else resolve_target(None, None)
    names = _models(target)
    if model is None:
        if not names:
            raise fail(f"the server at {target.url} lists no models")
        model = names[0]
    elif model not in names:
        raise fail(f"no model '{model}' at {target.url} (it has: {', '.join(names) or 'none'})")
    spec = Spec(
        model=model,
        concurrency=min(concurrency, requests),
        requests=requests,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=stream,
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tokens]:,} tokens, {task.fields[errors]} errors"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"{model} ×{spec.concurrency}", total=requests, tokens=0, errors=0)
        tokens = errors = 0

        def advance(shot: Shot) -> None:
            nonlocal tokens, errors
            tokens += shot.tokens
            errors += 1 if shot.error else 0
            progress.update(task, advance=1, tokens=tokens, errors=errors)

        shots, seconds = run(
            run_shots(f"{target.url}/v1", spec, api_key=target.key, on_shot=advance)
        )
    result = stats(shots, seconds)
    if result.errors == result.requests:
        raise fail(f"every request failed; the first: {result.first_error}")
    record: dict[str, Any] = {
        "url": target.url,
        "model": model,
        "stream": stream,
        "concurrency": spec.concurrency,
        "requests": result.requests,
        "errors": result.errors,
        "prompt_tokens": prompt_tokens,
        "max_tokens": max_tokens,
        "tokens": result.tokens,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(result.throughput, 1),
        "requests_per_second": round(result.requests / seconds, 2) if seconds else None,
    }
    record |= {f"ttft_p{q}_ms": _ms(result.ttft[q]) for q in PERCENTILES}
    record |= {f"itl_p{q}_ms": _ms(result.itl[q]) if stream else None for q in PERCENTILES}
    record["first_error"] = result.first_error
    fmt = Format.JSON if json_output else Format.TABLE
    emit_record(record, fmt, title=f"chatapp bench: {model} at {target.url}")
