"""What goes wrong: a 429, no server at all, and a reply stream that breaks mid-answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from chatapp.engines.supervisor import free_port
from tests.conftest import LiveServer
from tests.tui.conftest import Account, main_screen, until
from tui.api import ChatApi, Endpoint
from tui.app import ChatApp
from tui.data import Completed, Delta, Started

COUNTED = "".join(f"t{i} " for i in range(30))


async def test_a_429_is_a_notice_with_a_countdown_and_the_question_is_kept(
    server: LiveServer, make_app: Callable[..., ChatApp], account: Account
) -> None:
    limited = httpx.put(
        f"{server.url}/admin/limits/key/{account.key_id}",
        headers={"Authorization": f"Bearer {server.key}"},
        json={"limits": {"requests_per_minute": 1}},
        timeout=30,
    )
    assert limited.status_code == 200, limited.text
    spent = account.http.post(
        "/v1/chat/completions",
        json={"model": "scripted", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert spent.status_code == 200
    app = make_app()
    async with app.run_test(size=(100, 32)) as pilot:
        screen = main_screen(app)
        await pilot.press(*"are you there", "enter")
        await until(pilot, lambda: "rate limited" in screen.status.notice, "the countdown")
        assert screen.composer.text == "are you there"  # nothing typed is lost
        assert any("Rate limited" in n.message for n in app._notifications)
        assert screen.chat.last("assistant") is None  # no half reply left on screen
        assert app.is_running


async def test_no_server_says_how_to_start_one_and_nothing_crashes() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    app = ChatApp(ChatApi(Endpoint(url, "ca-nobody")))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = main_screen(app)
        await until(pilot, lambda: not screen.online, "the server marked offline")
        notice = str(screen.chat.query_one(".notice").render())
        assert "chatapp serve" in notice and url in notice
        await pilot.press(*"hello", "enter")
        await until(pilot, lambda: screen.composer.text == "hello", "the question given back")
        await pilot.press("f1")
        await pilot.press("escape")
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)
        await pilot.press("escape")
        assert app.is_running
        assert "(offline)" in str(screen.status.render())


class BreakOnce(httpx.AsyncBaseTransport):
    """Cuts the first reply stream after a few events, as a flaky network would."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.broken = 0
        self.resumed_after: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/events"):
            self.resumed_after.append(request.headers.get("last-event-id", ""))
        if request.method != "POST" or not request.url.path.endswith("/messages") or self.broken:
            return response
        self.broken += 1
        source = response.stream
        assert isinstance(source, httpx.AsyncByteStream)

        async def cut() -> AsyncIterator[bytes]:
            frames = 0
            async for chunk in source:
                yield chunk
                frames += chunk.count(b"\n\n")
                if frames >= 6:
                    await source.aclose()
                    raise httpx.ReadError("connection reset")

        return httpx.Response(response.status_code, headers=response.headers, stream=_Stream(cut()))

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk


async def test_a_dropped_stream_resumes_with_last_event_id_and_no_duplicate_text(
    server: LiveServer, account: Account
) -> None:
    transport = BreakOnce()
    api = ChatApi(Endpoint(server.url, account.secret), transport=transport)
    try:
        conversation = await api.create(model="scripted")
        text, seqs, completed = [], [], None
        async for event in api.send(conversation.id, "script:count"):
            seqs.append(event.seq)
            if isinstance(event, Delta):
                text.append(event.text)
            elif isinstance(event, Completed):
                completed = event
            else:
                assert isinstance(event, Started)
    finally:
        await api.aclose()
    assert transport.broken == 1 and transport.resumed_after and transport.resumed_after[0] != "0"
    assert seqs == list(range(1, len(seqs) + 1))  # every event once, in order
    assert "".join(text) == COUNTED
    assert completed is not None and completed.status == "complete"
    assert completed.content == COUNTED
