"""The conversations API: CRUD, branches, and replies streamed as named SSE events.

Sending stores the user message and an empty reply first, then generates the reply on its own
task (chatapp.generation) that clients follow, leave and resume with Last-Event-ID.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from chatapp.accounts import Principal
from chatapp.config import ModelConfig
from chatapp.context import Prompt, fit_prompt
from chatapp.conversations import ConversationStore
from chatapp.errors import InvalidRequest, NotStored
from chatapp.generation import Generation
from chatapp.ids import new_id
from chatapp.moderation import OutputGuard, content_blocked
from chatapp.moderation_config import Policy
from chatapp.replies import Reply, produce_reply
from chatapp.summaries import write_summary
from chatapp.titles import write_title
from chatapp.tool_calls import tools_not_supported
from chatapp.upstreams import ModelPool
from server.auth import authenticate
from server.body import read_json
from server.protocol import parse_chat_request
from server.request_log import made_request_id, request_id
from server.sse import EventStreamResponse
from server.state import GatewayState, state_of

__all__ = [
    "cancel_reply",
    "conversation",
    "conversations",
    "follow_events",
    "get_message",
    "list_messages",
    "regenerate",
    "send_message",
    "siblings",
    "switch_branch",
]

_PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


def _caller(request: Request) -> tuple[GatewayState, Principal, ConversationStore]:
    principal = authenticate(request)
    state = state_of(request)
    return state, principal, state.conversations


def _flag(request: Request, name: str, default: bool | None) -> bool | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value not in ("true", "false", "any"):
        raise InvalidRequest(f"{name} must be true, false or any", param=name)
    return None if value == "any" else value == "true"


def _limit(request: Request, default: int) -> int:
    value = request.query_params.get("limit", str(default))
    if not (value.isascii() and value.isdigit() and len(value) < 5) or not 1 <= int(value) <= 200:
        raise InvalidRequest("limit must be a whole number from 1 to 200", param="limit")
    return int(value)


async def conversations(request: Request) -> Response:
    """GET: list (cursor pages, newest first; archived/pinned/tag/folder); POST: create."""
    state, principal, store = _caller(request)
    if request.method == "POST":
        body = await read_json(request, state.config.server.max_body_bytes)
        if body.get("model") is not None:
            state.pool(body["model"])
        # In the loop's shared commit, as every write of a chat: a write lock held elsewhere
        # (the housekeeper indexing) is waited for on the loop's timers, not in SQLite's busy
        # handler, which would sleep the loop's thread and every stream with it.
        created = await store.group_commit.run(lambda _: store.create(principal.user_id, body))
        return JSONResponse(created, status_code=201)
    page = store.listing(
        principal.user_id,
        limit=_limit(request, 50),
        cursor=request.query_params.get("cursor"),
        archived=_flag(request, "archived", False),
        pinned=_flag(request, "pinned", None),
        tag=request.query_params.get("tag"),
        folder=request.query_params.get("folder"),
    )
    return JSONResponse({"object": "list", "data": page.items, "next_cursor": page.next_cursor})


async def conversation(request: Request) -> Response:
    """GET one, PATCH its fields, DELETE it (soft)."""
    state, principal, store = _caller(request)
    cid = request.path_params["cid"]
    if request.method == "PATCH":
        body = await read_json(request, state.config.server.max_body_bytes)
        if body.get("model") is not None:
            state.pool(body["model"])
        changed = await store.group_commit.run(lambda _: store.update(principal.user_id, cid, body))
        return JSONResponse(changed)
    if request.method == "DELETE":
        await store.group_commit.run(lambda _: store.delete(principal.user_id, cid))
        return JSONResponse({"id": cid, "object": "conversation.deleted", "deleted": True})
    return JSONResponse(store.get(principal.user_id, cid))


async def list_messages(request: Request) -> Response:
    """GET: the current branch, `limit` messages at a time, going back with `before`."""
    _, principal, store = _caller(request)
    page = store.page(
        principal.user_id,
        request.path_params["cid"],
        limit=_limit(request, 50),
        before=request.query_params.get("before"),
    )
    return JSONResponse({"object": "list", "data": page.items, "previous": page.next_cursor})


async def get_message(request: Request) -> Response:
    _, principal, store = _caller(request)
    params = request.path_params
    return JSONResponse(store.message(principal.user_id, params["cid"], params["mid"]))


async def siblings(request: Request) -> Response:
    """GET: a message and its alternatives (regenerated answers, edited questions)."""
    _, principal, store = _caller(request)
    params = request.path_params
    items = store.siblings(principal.user_id, params["cid"], params["mid"])
    return JSONResponse({"object": "list", "data": items})


async def switch_branch(request: Request) -> Response:
    """POST: make the branch through this message current (down to its newest leaf)."""
    _, principal, store = _caller(request)
    cid, mid = request.path_params["cid"], request.path_params["mid"]
    return JSONResponse(
        await store.group_commit.run(lambda _: store.switch(principal.user_id, cid, mid))
    )


async def send_message(request: Request) -> Response | EventStreamResponse:
    """POST {content, parent_id?, model?, temperature?…}: store it, stream the reply."""
    state, principal, store = _caller(request)
    cid = request.path_params["cid"]
    conv = store.get(principal.user_id, cid)
    key = request.headers.get("idempotency-key")
    if key:
        earlier = store.recall(principal.user_id, key)
        if earlier is not None:
            return _replay(state, principal, store, earlier[0], earlier[2], after=0)
    body = await read_json(request, state.config.server.max_body_bytes)
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise InvalidRequest("content must be a non-empty string", param="content")
    parent_id = body.get("parent_id", conv["current_leaf"])
    if parent_id is not None and not isinstance(parent_id, str):
        raise InvalidRequest("parent_id must be a message id or null", param="parent_id")
    history = [*store.branch_to(cid, parent_id), {"role": "user", "content": content}]
    return await _start(state, principal, store, conv, body, history, parent_id, content, key)


async def regenerate(request: Request) -> Response | EventStreamResponse:
    """POST: a new answer to the same question, as a sibling of this assistant message."""
    state, principal, store = _caller(request)
    cid, mid = request.path_params["cid"], request.path_params["mid"]
    conv = store.get(principal.user_id, cid)
    message = store.message(principal.user_id, cid, mid)
    if message["role"] != "assistant":
        raise InvalidRequest(
            "Only an assistant message can be regenerated; edit a question "
            "by sending it with parent_id.",
            param="message_id",
        )
    body = (
        await read_json(request, state.config.server.max_body_bytes)
        if (request.headers.get("content-length", "0") != "0")
        else {}
    )
    history = store.path(cid, message["parent_id"])
    return await _start(
        state, principal, store, conv, body, history, message["parent_id"], None, None
    )


async def _start(
    state: GatewayState,
    principal: Principal,
    store: ConversationStore,
    conv: dict[str, Any],
    body: dict[str, Any],
    history: list[dict[str, Any]],
    parent_id: str | None,
    content: str | None,
    key: str | None,
) -> Response | EventStreamResponse:
    """Admit, store the question and an empty reply, and start generating it."""
    unknown = set(body) - {"content", "parent_id", "model", *_PARAMS}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"Unrecognized field: {name}", param=name)
    model_name = body.get("model") or conv["model"] or next(iter(state.pools))
    pool = state.pool(model_name)
    model = pool.model
    tools = tuple(conv["tools"])
    if tools and not model.tools:
        raise tools_not_supported(model.name)
    moderator = state.moderator
    policy = moderator.policy_for(principal)
    if policy is not None and content is not None:
        await _check_question(state, principal, store, conv, policy, content, parent_id, model)
    params = {k: body[k] for k in _PARAMS if k in body}
    # The generation parameters are checked before any of them is used.
    parse_chat_request(
        {"model": model.name, "messages": [{"role": "user", "content": "."}], **params}
    )
    prompt = fit_prompt(
        conv["system_prompt"],
        [m for m in history if m.get("status") != "blocked"],  # never sent to a model
        pool.upstreams[0].counter,
        context_window=model.context_window,
        output_reserve=params.get("max_tokens") or model.output_reserve,
        summary=conv["summary"],
        summary_through=conv["summary_through"],
    )
    chat = parse_chat_request(
        {
            "model": model.name,
            "messages": prompt.messages,
            **params,
        }
    )
    chat.body.setdefault("max_tokens", model.output_reserve)
    ticket = state.meter.admit(principal, model, chat.body, request_id=made_request_id())
    cid = conv["id"]

    user_message_id = new_id("msg") if content is not None else None  # none: regenerating
    reply_id = new_id("msg")

    def store_turn(conn: sqlite3.Connection) -> None:
        """The question and an empty reply to stream into."""
        question = (user_message_id, content or "") if user_message_id is not None else None
        store.add_turn(
            conn, cid, parent_id=parent_id, question=question, reply_id=reply_id, model=model.name
        )
        if key:
            store.remember(conn, principal.user_id, key, cid, user_message_id or "", reply_id)

    server = state.config.server
    guard = None
    if policy is not None:
        guard = OutputGuard.for_request(
            moderator,
            policy,
            principal=principal,
            model=model.name,
            request_id=request_id.get(),
            conversation_id=cid,
        )
    reply = Reply(
        cid,
        user_message_id,
        reply_id,
        pool,
        chat.body,
        ticket,
        user_id=principal.user_id,
        tools=tools,
        tool_iterations=server.tool_iterations,
        tool_timeout=server.tool_timeout_seconds,
        guard=guard,
    )
    stored = False

    async def run(generation: Generation) -> None:
        await produce_reply(
            generation,
            reply,
            completions=state.completions,
            meter=state.meter,
            store=store,
            searcher=state.searcher,
        )
        if not stored:
            return  # the turn was not stored: nothing to summarize or title
        _refresh_summary(state, principal, store, conv, prompt, pool)
        if content is not None and not conv["title"] and len(history) == 1:
            state.replies.background(
                write_title(
                    store=store,
                    conversation_id=cid,
                    principal=principal,
                    question=content,
                    pool=pool,
                    completions=state.completions,
                    meter=state.meter,
                ),
                name=f"title:{cid}",
            )

    # The reply's task opens the engine request while the turn is stored, and goes first: the
    # engine's time to the first token then covers the commit. The client hears of the reply
    # only once its question is stored. With an Idempotency-Key the turn is stored first, so
    # that a retry racing it never reaches the engine.
    generation = None if key else state.replies.start(reply_id, run)
    try:
        await store.group_commit.run(store_turn, after_others=generation is not None)
    except BaseException as exc:
        # Nothing was stored (the turn's writes rolled back): the reply stops, writing nothing
        # (its usage is settled here, first), and the reservation goes back. A cancellation
        # (a shutdown) can come after the commit; the restart then marks the empty reply
        # incomplete.
        state.meter.finish(ticket, status="error", usage=None, upstream=None)
        if generation is not None:
            generation.stop("cancelled")
        earlier = store.recall(principal.user_id, key) if key else None
        if isinstance(exc, sqlite3.IntegrityError) and earlier is not None:
            # The same Idempotency-Key won a race a moment ago: answer with that send.
            return _replay(state, principal, store, earlier[0], earlier[2], after=0)
        if isinstance(exc, sqlite3.Error):
            raise NotStored("The message could not be stored, so it was not answered", exc) from exc
        raise
    stored = True
    if generation is None:
        generation = state.replies.start(reply_id, run)
    return _stream(state, generation, after=0)


async def _check_question(
    state: GatewayState,
    principal: Principal,
    store: ConversationStore,
    conv: dict[str, Any],
    policy: Policy,
    content: str,
    parent_id: str | None,
    model: ModelConfig,
) -> None:
    """Moderate a question (and the conversation's system prompt, which goes with it); a
    blocked one is stored as `blocked` (never sent to a model)."""
    moderator = state.moderator
    texts = [text for text in (conv["system_prompt"], content) if text]
    blocked, flags = await moderator.check_messages(policy, texts)
    for decision in [*flags, *([blocked] if blocked else [])]:
        moderator.record(
            decision,
            direction="input",
            principal=principal,
            model=model.name,
            conversation_id=conv["id"],
            request_id=request_id.get(),
        )
    if blocked is not None:
        await store.group_commit.run(
            lambda conn: store.add_message(
                conv["id"],
                parent_id=parent_id,
                role="user",
                content=content,
                status="blocked",
                conn=conn,
            )
        )
        raise content_blocked(blocked)


def _refresh_summary(
    state: GatewayState,
    principal: Principal,
    store: ConversationStore,
    conv: dict[str, Any],
    prompt: Prompt,
    pool: ModelPool,
) -> None:
    """When turns past the stored summary were dropped, summarize them on top of it."""
    if not pool.model.summarize or not prompt.dropped:
        return
    ids = [m.get("id") for m in prompt.dropped]
    through = conv["summary_through"]
    if ids[-1] == through:
        return  # the summary already covers everything that was dropped
    start = ids.index(through) + 1 if through in ids else 0
    state.replies.background(
        write_summary(
            store=store,
            conversation_id=conv["id"],
            principal=principal,
            previous=conv["summary"] if start else None,
            dropped=prompt.dropped[start:],
            pool=pool,
            completions=state.completions,
            meter=state.meter,
        ),
        name=f"summary:{conv['id']}",
    )


def _stream(state: GatewayState, generation: Generation, *, after: int) -> EventStreamResponse:
    """The reply's events after `after`; the client counts as attached from now until the
    response ends (also when it leaves before the first frame), so abandoning is exact."""
    generation.attach()
    return EventStreamResponse(
        generation.frames_after(after),
        keepalive=state.config.server.keepalive_seconds,
        on_close=generation.detach,
    )


def _replay(
    state: GatewayState,
    principal: Principal,
    store: ConversationStore,
    cid: str,
    mid: str,
    *,
    after: int,
) -> Response | EventStreamResponse:
    """Events of a reply from `after` on: live or remembered, else its stored final form."""
    message = store.message(principal.user_id, cid, mid)
    generation = state.replies.get(mid)
    if generation is not None:
        return _stream(state, generation, after=after)
    # Forgotten (or from before a restart): the stored result as one event, numbered after
    # what the client has, so event ids never go backwards; its content replaces the text.
    stored = Generation(mid, grace_seconds=0, numbered_after=after)
    completed = {
        "message_id": mid,
        "status": message["status"],
        "finish_reason": message["finish_reason"],
        "usage": message["usage"],
        "content": message["content"],
    }
    stored.publish("message.completed", completed)
    stored.finish()
    return _stream(state, stored, after=after)


async def follow_events(request: Request) -> Response | EventStreamResponse:
    """GET (Last-Event-ID): the events of a reply after the last one the client saw."""
    state, principal, store = _caller(request)
    last = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    if not (last.isascii() and last.isdigit() and len(last) < 16):
        raise InvalidRequest("Last-Event-ID must be an event number", param="Last-Event-ID")
    params = request.path_params
    return _replay(state, principal, store, params["cid"], params["mid"], after=int(last))


async def cancel_reply(request: Request) -> Response:
    """POST: stop generating; the reply is stored `cancelled` with what it had."""
    state, principal, store = _caller(request)
    params = request.path_params
    store.message(principal.user_id, params["cid"], params["mid"])
    generation = state.replies.get(params["mid"])
    if generation is not None and not generation.done:
        generation.stop("cancelled")
        if generation.task is not None:
            await generation.task
    return JSONResponse(store.message(principal.user_id, params["cid"], params["mid"]))
