"""A scripted stand-in engine for failures a real one cannot be made to produce on demand.

It speaks OpenAI's chat completions SSE. The last user message picks the script:
  "script:slow"     waits before the first token (keep-alives must flow meanwhile)
  "script:error"    sends two tokens, then breaks the connection mid-answer
  "script:endless"  streams until the client goes away, and records that it noticed
  "script:reject"   answers 500 with a traceback, as llama-cpp-python's server does
  "script:garbage"  streams a chunk whose choices are not a list
  "script:cut"      ends with [DONE] but no finish_reason (an interrupted llama.cpp answer)
  "script:count"    streams "t0 " … "t29 " 40 ms apart, then stops normally
  "script:tool:NAME:ARGS"  calls tool NAME with the JSON ARGS (streamed in pieces, or not);
                    once the last message is the tool's result, answers "result: <it>"
  "script:tools-forever"   calls the calculator every time, until tool_choice is "none"
  "script:say:TEXT" streams TEXT word by word (answers not streamed: TEXT at once)
It also answers POST /v1/moderations like OpenAI's: "hate" scores 0.95 for a text with
"hateful" in it, 0.01 otherwise.
anything else      streams "ok" tokens and a usage chunk.

`python -m tests.scripted_upstream PORT LOG` runs it as its own process (one a test can
SIGKILL, the way an engine dies), appending each request's last message to LOG.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SLOW_SECONDS = 1.2


class Recorder:
    """What the stand-in saw, for tests to assert on (shared across threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.disconnects: list[float] = []
        self.requests: list[dict] = []
        self.unhealthy = False  # /v1/models answers 503 while set (health-check tests)
        self.log: str | None = None

    def note_request(self, body: dict) -> None:
        with self.lock:
            self.requests.append(body)
            if self.log is not None:
                with open(self.log, "a", encoding="utf-8") as log:
                    log.write(json.dumps(body["messages"][-1]["content"]) + "\n")

    def note_disconnect(self) -> None:
        with self.lock:
            self.disconnects.append(time.monotonic())


def _chunk(text: str | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    choices = (
        []
        if usage
        else [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}]
    )
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
        "choices": choices,
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _tool_script(body: dict) -> dict | str | None:
    """For the tool scripts: a call to make ({"name", "arguments"}) or text to answer."""
    messages = body["messages"]
    asked = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
    if not isinstance(asked, str) or not asked.startswith("script:tool"):
        return None
    if asked == "script:tools-forever":
        if body.get("tool_choice") == "none":
            return "gave up"
        return {"name": "calculator", "arguments": '{"expression": "1+1"}'}
    if messages[-1].get("role") == "tool":
        return f"result: {messages[-1]['content']}"
    _, _, name, arguments = asked.split(":", 3)
    return {"name": name, "arguments": arguments}


def _tool_response(body: dict, answer: dict | str) -> Response:
    call_id = f"call_{len(body['messages'])}"
    if not body.get("stream"):
        text = answer if isinstance(answer, str) else None
        message: dict = {"role": "assistant", "content": text}
        if isinstance(answer, dict):
            message["tool_calls"] = [{"id": call_id, "type": "function", "function": dict(answer)}]
        finish = "tool_calls" if isinstance(answer, dict) else "stop"
        return JSONResponse(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 1,
                "model": "scripted",
                "choices": [{"index": 0, "finish_reason": finish, "message": message}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            }
        )

    async def stream() -> AsyncIterator[bytes]:
        if isinstance(answer, str):
            yield _chunk(answer)
            yield _chunk(finish="stop")
        else:
            arguments = answer["arguments"]
            third = max(1, len(arguments) // 3)
            pieces = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
            first = {"index": 0, "id": call_id, "type": "function"}
            yield _delta({"tool_calls": [{**first, "function": {"name": answer["name"]}}]})
            for piece in pieces:
                yield _delta({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            yield _chunk(finish="tool_calls")
        yield _chunk(usage={"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


def _say(body: dict, text: str) -> Response:
    if not body.get("stream"):
        return _tool_response({**body, "stream": False}, text)
    words = text.split(" ")

    async def stream() -> AsyncIterator[bytes]:
        for i, word in enumerate(words):
            yield _chunk(word if i == 0 else " " + word)
            await asyncio.sleep(0.005)
        yield _chunk(finish="stop")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


async def _moderations(request: Request) -> Response:
    text = str((await request.json()).get("input", ""))
    score = 0.95 if "hateful" in text else 0.01
    return JSONResponse(
        {
            "id": "modr-scripted",
            "model": "scripted-moderation",
            "results": [
                {
                    "flagged": score > 0.5,
                    "categories": {"hate": score > 0.5, "violence": False},
                    "category_scores": {"hate": score, "violence": 0.0},
                }
            ],
        }
    )


def _delta(delta: dict) -> bytes:
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def build_app(recorder: Recorder) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        recorder.note_request(body)
        script = body["messages"][-1]["content"]
        tool_answer = _tool_script(body)
        if tool_answer is not None:
            return _tool_response(body, tool_answer)
        if isinstance(script, str) and script.startswith("script:say:"):
            return _say(body, script.removeprefix("script:say:"))
        if script == "script:reject":
            return JSONResponse(
                {
                    "error": {
                        "message": 'boom\n  File "/secret/path.py", line 1',
                        "type": "internal_server_error",
                    }
                },
                status_code=500,
            )
        if not body.get("stream"):
            if script == "script:slow":
                for _ in range(int(SLOW_SECONDS * 50)):
                    if await request.is_disconnected():
                        recorder.note_disconnect()
                        return Response(status_code=499)
                    await asyncio.sleep(0.02)
            return JSONResponse(
                {
                    "id": "chatcmpl-scripted",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "scripted",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "ok"},
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            if script == "script:slow":
                await asyncio.sleep(SLOW_SECONDS)
            if script == "script:endless":
                try:
                    while True:
                        yield _chunk("tick")
                        await asyncio.sleep(0.02)
                        if await request.is_disconnected():
                            recorder.note_disconnect()
                            return
                except asyncio.CancelledError:
                    recorder.note_disconnect()
                    raise
            if script == "script:garbage":
                yield b'data: {"id": "x", "choices": "not-a-list"}\n\n'
                return
            if script == "script:count":
                for i in range(30):
                    yield _chunk(f"t{i} ")
                    await asyncio.sleep(0.04)
                yield _chunk(finish="stop")
                yield b"data: [DONE]\n\n"
                return
            if script == "script:cut":
                yield _chunk("ok")
                yield b"data: [DONE]\n\n"
                return
            for word in ("ok", " ok", " ok"):
                yield _chunk(word)
                if script == "script:error" and word == " ok":
                    raise RuntimeError("scripted failure mid-stream")
            yield _chunk(finish="stop")
            yield _chunk(
                usage={
                    "prompt_tokens": 3,
                    "completion_tokens": 3,
                    "total_tokens": 6,
                    "prompt_tokens_details": {"cached_tokens": 1},
                }
            )
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        if recorder.unhealthy:
            return JSONResponse({"error": {"message": "scripted: unhealthy"}}, status_code=503)
        return JSONResponse({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/moderations", _moderations, methods=["POST"]),
        ]
    )


class ScriptedUpstream:
    """Runs the stand-in under uvicorn on a loopback port in a background thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.recorder = Recorder()
        config = uvicorn.Config(
            build_app(self.recorder),
            host="127.0.0.1",
            port=port,
            log_level="critical",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted upstream did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


if __name__ == "__main__":
    import sys

    recorder = Recorder()
    recorder.log = sys.argv[2]
    uvicorn.run(build_app(recorder), host="127.0.0.1", port=int(sys.argv[1]), log_level="critical")
