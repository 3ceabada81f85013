"""A bare relay on chatapp's own stack: uvicorn in, aiohttp out, each read passed on as it came.

`python -m bench.copier --port P --upstream http://127.0.0.1:Q/v1` forwards every POST to
the same path under the upstream and streams its answer back byte for byte: no auth, no
parsing, no accounting. gateway_bench runs it beside `chatapp serve` as the floor of what any
gateway on uvicorn and aiohttp costs a stream on this box, so a missed target can be read as
the stack's or as chatapp's. A benchmark tool, not something to serve users with.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send

__all__ = ["Copier", "main"]


class Copier:
    """The ASGI app: one shared aiohttp session, made on the first request (its loop's)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.session: aiohttp.ClientSession | None = None
        self.timeout = aiohttp.ClientTimeout(total=None, sock_read=600.0)
        self.headers = {"content-type": "application/json"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        url = self.upstream + scope["path"]
        async with self.session.request(
            scope["method"], url, data=body or None, headers=self.headers, timeout=self.timeout
        ) as answer:
            kept = [(b"content-type", answer.headers.get("content-type", "").encode())]
            await send({"type": "http.response.start", "status": answer.status, "headers": kept})
            while chunk := await answer.content.readany():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the engine's base URL")
    args = parser.parse_args(argv)
    app = Copier(args.upstream)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
