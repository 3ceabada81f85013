"""The gateway's transport to engines: httpx's API and errors over aiohttp, against real sockets.

Each test runs a tiny HTTP/1.1 server on loopback that does exactly what the test needs
(answer in pieces, hang, hang up, speak garbage), and checks what an httpx client sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from chatapp import engine_transport
from chatapp.completions import Completions
from chatapp.config import ModelConfig
from chatapp.engine_transport import engine_client
from chatapp.engines.supervisor import free_port
from chatapp.errors import UpstreamError
from chatapp.upstreams import ModelPool, Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def read_request(reader: asyncio.StreamReader, heads: list[bytes] | None = None) -> bytes:
    """One request off the connection: its head (kept in `heads` when given), then as many
    body bytes as it says."""
    head = await reader.readuntil(b"\r\n\r\n")
    if heads is not None:
        heads.append(head)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away, as some tests make it
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def client(read: float = 10.0) -> httpx.AsyncClient:
    return engine_client(httpx.Timeout(connect=5.0, read=read, write=5.0, pool=None))


async def test_each_piece_arrives_before_the_next_is_sent() -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await go_on.wait()  # the second piece only once the client has the first
        writer.write(chunk(b"data: two\n\n") + b"0\r\n\r\n")
        await writer.drain()

    async with serving(handler) as url, client() as http:
        async with http.stream("POST", url, json={"stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            pieces = response.aiter_text()
            assert await anext(pieces) == "data: one\n\n"
            go_on.set()
            assert [piece async for piece in pieces] == ["data: two\n\n"]


async def test_requests_go_out_whole_and_a_read_answer_leaves_its_connection() -> None:
    seen: list[bytes] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with serving(handler) as url, client() as http:
        first = await http.post(url, json={"n": 1}, headers={"authorization": "Bearer k"})
        second = await http.post(url, json={"n": 2})
    assert (first.text, second.text) == ("ok", "ok")
    assert seen == [b'{"n":1}', b'{"n":2}']
    assert connections == 1


async def test_closing_an_unfinished_answer_hangs_up_so_the_engine_stops() -> None:
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        if await reader.read(1) == b"":  # end of file: the client closed the connection
            hung_up.set()

    async with serving(handler) as url, client() as http:
        async with http.stream("POST", url, json={}) as response:
            async for _ in response.aiter_bytes():
                break
        await asyncio.wait_for(hung_up.wait(), 5)
    assert hung_up.is_set()  # the engine saw end of file: it stops generating


async def test_nobody_listening_is_a_connect_error() -> None:
    async with client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"http://127.0.0.1:{free_port()}/v1/chat/completions", json={})


async def test_a_hang_up_before_the_answer_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    async with serving(handler) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, json={})


async def test_an_answer_cut_midway_is_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD + chunk(b"data: one\n\n"))
        await writer.drain()
        writer.close()  # no terminating chunk

    async with serving(handler) as url, client() as http:
        async with http.stream("POST", url, json={}) as response:
            with pytest.raises(httpx.ReadError):
                async for _ in response.aiter_bytes():
                    pass


async def test_an_engine_that_goes_quiet_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(HEAD)
        await asyncio.sleep(1)

    async with serving(handler) as url, client(read=0.3) as http:
        async with http.stream("POST", url, json={}) as response:
            with pytest.raises(httpx.ReadTimeout):
                async for _ in response.aiter_bytes():
                    pass


async def test_an_answer_that_is_not_http_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with serving(handler) as url, client() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post(url, json={})


async def test_a_url_that_is_not_http_is_refused_plainly() -> None:
    async with client() as http:
        with pytest.raises(httpx.UnsupportedProtocol):
            await http.post("ftp://127.0.0.1/v1/chat/completions", json={})


async def test_a_request_the_engine_hung_up_on_unanswered_goes_out_once_more() -> None:
    """An engine closing a kept-alive connection just as a request goes out on it never saw
    the request: the gateway sends it again instead of failing it, and counts no failure."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if connections == 1:
            return  # hang up without a word
        body = b'{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    model = ModelConfig(name="m", engine=None, model="m", context_window=1024)
    async with serving(handler) as url, client() as http:
        upstream = Upstream(name="node", url=f"{url}/v1")
        pool = ModelPool(model=model, upstreams=[upstream])
        answer = await Completions(http).create(pool, {"model": "m", "messages": []})
    assert answer.usage == {"prompt_tokens": 3, "completion_tokens": 1}
    assert connections == 2 and upstream.failures == 0 and upstream.served == 1


async def test_a_hang_up_after_the_engine_had_the_request_a_while_is_not_sent_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine (or a proxy before it) worked on it and gave up: sending it again would
    double the work, so it fails over like any other failure."""
    monkeypatch.setattr(engine_transport, "AT_ONCE", 0.05)
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        await asyncio.sleep(0.3)  # at work on it, then gone

    model = ModelConfig(name="m", engine=None, model="m", context_window=1024)
    async with serving(handler) as url, client() as http:
        upstream = Upstream(name="node", url=f"{url}/v1")
        pool = ModelPool(model=model, upstreams=[upstream])
        with pytest.raises(UpstreamError):
            await Completions(http).create(pool, {"model": "m", "messages": []})
    assert connections == 1 and upstream.failures == 1


def _clear_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy settings out of the way (urllib prefers the lowercase ones)."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_a_remote_engine_is_reached_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heads: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with serving(proxy) as proxy_url:
        address = proxy_url.removeprefix("http://")
        _clear_proxy_variables(monkeypatch)
        monkeypatch.setenv("HTTP_PROXY", f"http://bob:s3cret@{address}")
        async with client() as http:
            answer = await http.post("http://gpu1.example/v1/chat/completions", json={})
    assert answer.text == "ok"
    request_line, *headers = heads[0].decode().split("\r\n")
    assert request_line == "POST http://gpu1.example/v1/chat/completions HTTP/1.1"
    fields = dict(h.lower().split(": ", 1) for h in headers if h)
    assert fields["proxy-authorization"] == "basic ym9ionmzy3jlda=="  # bob:s3cret


async def test_engines_on_loopback_never_go_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def engine(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    _clear_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nobody there
    async with serving(engine) as url, client() as http:
        assert (await http.post(url, json={})).text == "ok"


@pytest.mark.parametrize(
    ("host", "proxied"),
    [("gpu1.example", True), ("gpu2.internal", False), ("10.0.0.5", False), ("localhost", False)],
)
def test_no_proxy_exempts_hosts_as_it_names_them(
    monkeypatch: pytest.MonkeyPatch, host: str, proxied: bool
) -> None:
    _clear_proxy_variables(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", ".internal,10.0.0.5")
    proxy, _ = engine_transport.env_proxy("https", host)
    assert (proxy == "http://proxy.corp:3128") is proxied


async def test_a_cookie_an_engine_sets_is_not_sent_with_later_requests() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(2):
            await read_request(reader, heads)
            writer.write(
                b"HTTP/1.1 200 OK\r\nset-cookie: session=alice; Path=/\r\n"
                b"content-length: 2\r\n\r\n{}"
            )
            await writer.drain()

    async with serving(handler) as url, client() as http:
        for _ in range(2):
            assert (await http.post(url, json={})).status_code == 200
        assert not http.cookies
    assert len(heads) == 2 and b"cookie:" not in heads[1].lower()


async def test_engine_requests_skip_httpxs_layers_but_asking_for_redirects_takes_them() -> None:
    """A plain request goes straight to the transport (a redirect is answered as it came);
    one that asks for httpx's redirect handling gets it, as does a client with hooks."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while not reader.at_eof():
            await read_request(reader, heads)
            if heads[-1].startswith(b"POST /old "):
                writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /new\r\n")
                writer.write(b"content-length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

    async with serving(handler) as url, client() as http:
        plain = await http.post(f"{url}/old", json={})
        followed = await http.post(f"{url}/old", json={}, follow_redirects=True)
        assert (plain.status_code, plain.request.url.path) == (307, "/old")
        assert (followed.status_code, followed.text, followed.url.path) == (200, "ok", "/new")
        hooked: list[int] = []

        async def hook(response: httpx.Response) -> None:
            hooked.append(response.status_code)

        http.event_hooks = {"response": [hook]}
        await http.post(f"{url}/new", json={})
        assert hooked == [200]
    assert [head.split(b" ")[1] for head in heads] == [b"/old", b"/old", b"/new", b"/new"]
    with pytest.raises(RuntimeError, match="closed"):
        await http.post(url, json={})


@pytest.mark.filterwarnings("ignore:Sending a large body:ResourceWarning")  # aiohttp's, > 1 MB
async def test_an_engine_that_stops_reading_the_request_is_a_write_timeout() -> None:
    """aiohttp has no write timeout: httpx's is kept while the body goes out (a body bigger
    than the socket buffers, to an engine that never reads it, used to hang for good)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    timeout = httpx.Timeout(connect=5.0, read=10.0, write=0.5, pool=None)
    async with serving(handler) as url, engine_client(timeout) as http:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.WriteTimeout, match="stopped reading"):
            await asyncio.wait_for(http.post(url, content=b"x" * 32_000_000), 10)
        assert asyncio.get_running_loop().time() - started < 5
