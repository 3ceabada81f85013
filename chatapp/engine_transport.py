"""httpx's API over aiohttp's connections: how the gateway talks to engines.

Every token of every answer passes through here. httpx's own HTTP/1.1 stack (httpcore, h11
and anyio, all Python) cost about 70 µs of CPU a streamed chunk on a 2-core VM; aiohttp parses
in C and costs about 25 µs (bench/gateway_bench.py shows what that does to a whole gateway).
httpcore's pool also re-examined every connection it held at each request start and end, work
quadratic in its size. The rest of chatapp keeps httpx's client, errors and timeouts; aiohttp's
errors are mapped to the httpx ones that mean the same thing.
"""

from __future__ import annotations

import asyncio
import base64
import http.cookiejar
import ipaddress
import os
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import certifi
import httpx
from aiohttp.abc import AbstractStreamWriter
from httpx import USE_CLIENT_DEFAULT

__all__ = [
    "BODY",
    "AiohttpTransport",
    "EngineClient",
    "EngineHungUp",
    "engine_client",
    "env_proxy",
]

# Engines behind uvicorn (vLLM, llama.cpp's server, chatapp itself) drop a connection idle for
# 5 s; dropping ours sooner means a request never goes out on one the engine is closing.
KEEPALIVE_EXPIRY = 4.0
# A connection the engine was closing fails the request at once; one that fails later had
# reached an engine that worked on it (or a proxy that gave up), and is not sent again.
AT_ONCE = 1.0
_HANG_UPS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientConnectionResetError,
    aiohttp.ClientOSError,
)


# The response extension holding the answer's body as this transport reads it: a stream
# reader can take its reads from there, without httpx's generator around it (closing the
# response still closes it).
BODY = "chatapp.body"


class _BodyWriteTimeout(TimeoutError):
    """The engine stopped taking the request's body (aiohttp lets a body's TimeoutError
    through to the waiting request as it is, so it is told apart from a read timeout)."""


class _TimedBody(aiohttp.BytesPayload):
    """A request body whose sending gives up after httpx's write timeout: aiohttp has no
    write timeout, and an engine that stops reading its request (with a body bigger than the
    socket buffers) held the request forever. Its read timeout starts once the body is sent."""

    def __init__(self, body: bytes, timeout: float | None) -> None:
        super().__init__(body)
        self.write_timeout = timeout

    async def write(self, writer: AbstractStreamWriter) -> None:
        async with self._timed():
            await super().write(writer)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        async with self._timed():
            await super().write_with_length(writer, content_length)

    @asynccontextmanager
    async def _timed(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.write_timeout):
                yield
        except TimeoutError as exc:
            message = f"the engine stopped reading the request ({self.write_timeout} s)"
            raise _BodyWriteTimeout(message) from exc


class EngineHungUp(httpx.RemoteProtocolError):
    """The engine closed the connection at once without a byte of answer: it was closing the
    kept-alive connection the request went out on and never saw the request, so sending it
    once more is safe."""


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's failures as the httpx exceptions callers (and failover) already tell apart."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        message = "Server disconnected without sending a complete response."
        raise httpx.RemoteProtocolError(message, request=request) from exc
    except _BodyWriteTimeout as exc:
        raise httpx.WriteTimeout(str(exc), request=request) from exc
    except TimeoutError as exc:  # reading (aiohttp's read timeouts are TimeoutErrors too)
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # not HTTP: a malformed status line or headers
        raise httpx.RemoteProtocolError(exc.message, request=request) from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientOSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc) or type(exc).__name__, request=request) from exc
    except ValueError as exc:  # aiohttp refusing what it was given, e.g. a newline in a header
        raise httpx.LocalProtocolError(str(exc), request=request) from exc


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def env_proxy(scheme: str, host: str) -> tuple[str | None, dict[str, str] | None]:
    """The proxy HTTP(S)_PROXY names for this host (and its Proxy-Authorization), unless
    NO_PROXY exempts the host. Never for loopback: an engine on this box is one a proxy
    elsewhere cannot reach."""
    if _loopback(host) or urllib.request.proxy_bypass(host):
        return None, None
    proxy = urllib.request.getproxies().get(scheme)
    if not proxy:
        return None, None
    url = httpx.URL(proxy if "://" in proxy else f"http://{proxy}")
    if not url.username:
        return str(url), None
    credentials = base64.b64encode(f"{url.username}:{url.password}".encode()).decode()
    bare = str(url.copy_with(username=None, password=None))
    return bare, {"Proxy-Authorization": f"Basic {credentials}"}


def _tls_context() -> ssl.SSLContext:
    """Certificates checked as httpx checks them: SSL_CERT_FILE when set, else certifi's."""
    return ssl.create_default_context(cafile=os.environ.get("SSL_CERT_FILE") or certifi.where())


class _Body(httpx.AsyncByteStream, AsyncIterator[bytes]):
    """An answer's body as it arrives. Closed before its end, the connection is dropped, so
    the engine sees the disconnect and stops generating; read to the end, it is reused.

    Its own iterator, not an async generator over aiohttp's: every suspended stream holds
    one step of each generator between the socket and the client, and at 128 streams those
    steps are most of what each young garbage collection walks.
    """

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self.response = response
        self.request = request

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self.response.content.readany()
        except Exception as exc:  # mapped here: a context manager a read costs a token's CPU
            with _as_httpx_errors(self.request):
                raise exc
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Plain HTTP/1.1 (and HTTPS) to any number of engines, idle connections kept 4 s."""

    def __init__(self, keepalive_expiry: float = KEEPALIVE_EXPIRY) -> None:
        self.keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        # Each engine's proxy, looked up once: aiohttp's trust_env looked it up (and read
        # ~/.netrc) in two worker threads at every request.
        self._proxies: dict[tuple[str, str], tuple[str | None, dict[str, str] | None]] = {}

    def _proxy(self, url: httpx.URL) -> tuple[str | None, dict[str, str] | None]:
        key = (url.scheme, url.host)
        proxy = self._proxies.get(key)
        if proxy is None:
            proxy = self._proxies[key] = env_proxy(*key)
        return proxy

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, keepalive_timeout=self.keepalive_expiry, ssl=_tls_context()
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes by the response's content-encoding
                cookie_jar=aiohttp.DummyCookieJar(),  # an engine's cookies are not kept
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        body = await request.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        proxy, proxy_headers = self._proxy(request.url)
        if proxy_headers and request.url.scheme == "http":
            # Plain HTTP is sent to the proxy itself (aiohttp puts proxy_headers only on the
            # CONNECT of a tunnel, which is what keeps them from an https engine).
            headers += proxy_headers.items()
        sent_at = time.monotonic()
        try:
            with _as_httpx_errors(request):
                response = await self._client().request(
                    request.method,
                    str(request.url),
                    data=_TimedBody(body, timeouts.get("write")) if body else None,
                    headers=headers,
                    allow_redirects=False,
                    timeout=timeout,
                    proxy=proxy,
                    proxy_headers=proxy_headers,
                )
        except httpx.TransportError as exc:
            cause = exc.__cause__
            at_once = time.monotonic() - sent_at < AT_ONCE
            connecting = isinstance(cause, aiohttp.ClientConnectorError)
            if at_once and isinstance(cause, _HANG_UPS) and not connecting:
                raise EngineHungUp(str(exc), request=request) from cause
            raise
        answer = _Body(response, request)
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=answer,
            extensions={"http_version": b"HTTP/1.1", BODY: answer},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class EngineClient(httpx.AsyncClient):
    """httpx's client, sending straight to its one transport.

    An engine request uses none of what `AsyncClient.send` wraps around the transport (auth,
    redirects, cookies, event hooks): those layers and the cookie jar's urllib wrappers were
    a tenth of a streamed request's CPU in the gateway. A request that asks for any of them,
    or a client given auth or hooks, takes httpx's own path.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, **options: Any) -> None:
        super().__init__(transport=transport, **options)
        self.engine_transport = transport

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = USE_CLIENT_DEFAULT,
        follow_redirects: Any = USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        plain = (
            auth is USE_CLIENT_DEFAULT
            and follow_redirects is USE_CLIENT_DEFAULT
            and self.auth is None
            and not self.follow_redirects
            and not any(self.event_hooks.values())
        )
        if not plain or self.is_closed:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        response = await self.engine_transport.handle_async_request(request)
        response.request = request
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


def engine_client(timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The one client every user's engine requests share. It keeps no cookies: httpx's client
    jar would send a cookie one engine answer set with every later request, anyone's."""
    no_cookies = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return EngineClient(AiohttpTransport(), timeout=timeout, cookies=no_cookies)
