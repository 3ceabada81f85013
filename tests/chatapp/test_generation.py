"""A reply's events: numbered without gaps, read from any number, kept cheaply once done."""

from __future__ import annotations

import asyncio
import gc
import json

from chatapp.generation import Generation, GenerationRegistry


def _events(frames: list[bytes]) -> list[tuple[int, str, dict]]:
    out = []
    for frame in frames:
        fields = dict(line.split(": ", 1) for line in frame.decode().strip().split("\n"))
        out.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return out


async def _read(generation: Generation, after: int) -> list[bytes]:
    return [frame async for frame in generation.frames_after(after)]


async def test_a_follower_gets_every_event_after_its_last_as_they_come() -> None:
    generation = Generation("m1", grace_seconds=1)
    generation.publish("message.started", {"message_id": "m1"})
    generation.publish("token.delta", {"text": "a"})
    follower = asyncio.ensure_future(_read(generation, 1))
    await asyncio.sleep(0)
    generation.publish("token.delta", {"text": "b"})
    await asyncio.sleep(0)
    generation.publish("message.completed", {"content": "ab"})
    # Ends at message.completed: the reply's task (storing, titling) need not end first.
    frames = await asyncio.wait_for(follower, timeout=1)
    assert not generation.done
    assert _events(frames) == [
        (2, "token.delta", {"text": "a"}),
        (3, "token.delta", {"text": "b"}),
        (4, "message.completed", {"content": "ab"}),
    ]


async def test_a_stored_reply_resumed_is_numbered_after_what_the_client_has() -> None:
    stored = Generation("m1", grace_seconds=0, numbered_after=7)
    stored.publish("message.completed", {"content": "all of it"})
    stored.finish()
    assert _events(await _read(stored, 7)) == [(8, "message.completed", {"content": "all of it"})]


async def test_a_finished_reply_keeps_nothing_for_the_garbage_collector_per_event() -> None:
    registry = GenerationRegistry(grace_seconds=1, keep_seconds=60)

    async def run(generation: Generation) -> None:
        generation.publish("message.started", {"message_id": "m1"})
        for i in range(200):
            generation.publish("token.delta", {"text": f"t{i} "})
        generation.publish("message.completed", {"content": "..."})

    generation = registry.start("m1", run)
    assert generation.task is not None
    await generation.task
    await asyncio.sleep(0)  # the task's done callback
    assert generation.done and registry.get("m1") is generation  # kept for late resumes
    assert len(generation.frames) == 202
    assert not any(gc.is_tracked(frame) for frame in generation.frames)
    # Nor as a whole: no task (nor the request context it held), and the frames' tuple is
    # untracked at the collector's next pass.
    assert generation.task is None
    gc.collect()
    assert not gc.is_tracked(generation.frames)
    assert len(_events(await _read(generation, 200))) == 2  # still resumable, exactly


async def test_a_finished_reply_is_forgotten_after_keep_seconds_with_no_timer_of_its_own() -> None:
    registry = GenerationRegistry(grace_seconds=1, keep_seconds=0.05)

    async def run(generation: Generation) -> None:
        generation.publish("message.completed", {"content": "..."})

    loop = asyncio.get_running_loop()
    timers_before = len(getattr(loop, "_scheduled", ()))
    generation = registry.start("m1", run)
    assert generation.task is not None
    await generation.task
    await asyncio.sleep(0)  # the task's done callback
    assert registry.get("m1") is generation  # kept for a late resume
    assert len(getattr(loop, "_scheduled", ())) == timers_before
    await asyncio.sleep(0.06)
    assert registry.get("m1") is None
    assert not registry._finished  # nothing of it is left behind


async def test_every_follower_is_woken_and_one_that_left_is_not_in_the_way() -> None:
    generation = Generation("m1", grace_seconds=1)
    first = asyncio.ensure_future(_read(generation, 0))
    second = asyncio.ensure_future(_read(generation, 0))
    gone = asyncio.ensure_future(_read(generation, 0))
    await asyncio.sleep(0)  # all three wait for the first event
    gone.cancel()
    generation.publish("token.delta", {"text": "a"})
    generation.publish("message.completed", {"content": "a"})
    frames = await asyncio.wait_for(asyncio.gather(first, second), timeout=1)
    assert frames[0] == frames[1] and len(frames[0]) == 2
    assert gone.cancelled()


def test_a_token_frame_is_the_frame_publish_writes_for_it() -> None:
    texts = ["a", 'say "hi"\n', "back\\slash\ttab", "é ü ß", "😀 emoji", "\x00\x1f", ""]
    fast = Generation("m1", grace_seconds=1)
    plain = Generation("m1", grace_seconds=1)
    for text in texts:
        fast.publish_text(text)
        plain.publish("token.delta", {"text": text})
    assert fast.frames == plain.frames
    assert [data["text"] for _, _, data in _events(fast.frames)] == texts
