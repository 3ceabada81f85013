"""The conversations API against a live server: storage, streaming events, resume, branches."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from chatapp.accounts import Accounts
from chatapp.context import SUMMARY_PREFIX
from chatapp.conversations import ConversationStore
from chatapp.paths import DB_NAME
from chatapp.store import open_database
from tests.conftest import LiveServer, wait_for
from tests.scripted_upstream import ScriptedUpstream


def _user_key(server: LiveServer, name: str) -> str:
    accounts = Accounts(open_database(server.home / DB_NAME))
    org = accounts.ensure_org(f"{name}-org", tier="enterprise")
    secret = accounts.create_key(accounts.ensure_user(f"{name}-{time.time_ns()}", org_id=org))
    accounts.db.conn.close()
    return secret.secret


class Api:
    """A small client for one key (what the TUI will be, minus the screen)."""

    def __init__(self, server: LiveServer, key: str) -> None:
        self.http = httpx.Client(
            base_url=server.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )

    def new(self, **fields: object) -> dict:
        # Titled by default: an untitled one sends a title request to the stand-in too.
        body = {"model": "scripted", "title": "test", **fields}
        response = self.http.post("/conversations", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def events(
        self,
        cid: str,
        content: str,
        *,
        stop_after: int | None = None,
        headers: dict | None = None,
        **body: object,
    ) -> list[tuple[int, str, dict]]:
        """Send a message and read its SSE events (all, or the first `stop_after`)."""
        with self.http.stream(
            "POST",
            f"/conversations/{cid}/messages",
            headers=headers,
            json={"content": content, **body},
        ) as response:
            assert response.status_code == 200, response.read()
            self.last_request_id = response.headers["x-request-id"]
            return _read(response, stop_after)

    def resume(self, cid: str, mid: str, last_event_id: int) -> list[tuple[int, str, dict]]:
        """The events of a reply after the last one seen, as a reconnecting client asks."""
        with self.http.stream(
            "GET",
            f"/conversations/{cid}/messages/{mid}/events",
            headers={"Last-Event-ID": str(last_event_id)},
        ) as response:
            return _read(response, None)


def _read(
    source: httpx.Response | Iterator[str], stop_after: int | None
) -> list[tuple[int, str, dict]]:
    """SSE events from a response (or from an iterator over its lines, to read in parts)."""
    lines = source.iter_lines() if isinstance(source, httpx.Response) else source
    events: list[tuple[int, str, dict]] = []
    current: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            continue
        if not line:
            if current:
                events.append((int(current["id"]), current["event"], json.loads(current["data"])))
                current = {}
                if stop_after is not None and len(events) >= stop_after:
                    break
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return events


@contextmanager
def _trigger(server: LiveServer, definition: str) -> Iterator[None]:
    """A trigger in the server's database while the block runs: a failure made on purpose."""
    db = open_database(server.home / DB_NAME)
    db.conn.execute(f"CREATE TRIGGER made_to_fail {definition}")
    try:
        yield
    finally:
        db.conn.execute("DROP TRIGGER made_to_fail")
        db.conn.close()


@pytest.fixture
def api(server: LiveServer) -> Iterator[Api]:
    client = Api(server, _user_key(server, "alice"))
    yield client
    client.http.close()


def test_a_reply_streams_as_named_events_and_is_stored(api: Api) -> None:
    conv = api.new(title="first")
    events = api.events(conv["id"], "hello")
    names = [name for _, name, _ in events]
    assert names[0] == "message.started" and names[-1] == "message.completed"
    assert [seq for seq, _, _ in events] == list(range(1, len(events) + 1))
    started, completed = events[0][2], events[-1][2]
    text = "".join(data["text"] for _, name, data in events if name == "token.delta")
    assert text == "ok ok ok" == completed["content"]
    assert completed["usage"]["completion_tokens"] == 3
    stored = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
    assert [(m["role"], m["content"], m["status"]) for m in stored] == [
        ("user", "hello", "complete"),
        ("assistant", "ok ok ok", "complete"),
    ]
    assert stored[1]["id"] == started["message_id"] == completed["message_id"]
    # Filed under the id the answer carried (the gateway made it): the logs find the reply.
    assert stored[1]["request_id"] == api.last_request_id


def test_a_reply_that_cannot_be_stored_still_ends_for_its_client(
    api: Api, server: LiveServer
) -> None:
    conv = api.new(title="unlucky")
    finish = f"BEFORE UPDATE OF content ON messages WHEN OLD.conversation_id = '{conv['id']}'"
    with _trigger(server, f"{finish} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"):
        events = api.events(conv["id"], "hello")
    # Served as it came, and ended as usual; the store keeps it `streaming` (a restart marks
    # it incomplete), and the server log says why.
    assert events[-1][1] == "message.completed"
    assert events[-1][2]["content"] == "ok ok ok"
    stored = api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]
    assert [(m["role"], m["status"]) for m in stored] == [
        ("user", "complete"),
        ("assistant", "streaming"),
    ]


def test_the_second_turn_is_sent_with_the_first(api: Api, scripted: ScriptedUpstream) -> None:
    conv = api.new(system_prompt="Be brief.")
    api.events(conv["id"], "My name is Ada.")
    api.events(conv["id"], "What is my name?")
    sent = scripted.recorder.requests[-1]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."),
        ("user", "My name is Ada."),
        ("assistant", "ok ok ok"),
        ("user", "What is my name?"),
    ]


def test_leaving_mid_stream_stores_what_was_generated_as_incomplete(
    api: Api, scripted: ScriptedUpstream
) -> None:
    conv = api.new()
    events = api.events(conv["id"], "script:endless", stop_after=4)
    reply_id = events[0][2]["message_id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = api.http.get(f"/conversations/{conv['id']}/messages/{reply_id}").json()
        if message["status"] != "streaming":
            break
        time.sleep(0.1)
    assert message["status"] == "incomplete"
    assert message["content"].startswith("ticktick")


def test_resume_with_last_event_id_gives_exactly_the_missing_events(api: Api) -> None:
    conv = api.new()
    first = api.events(conv["id"], "script:count", stop_after=5)
    reply_id = first[0][2]["message_id"]
    rest = api.resume(conv["id"], reply_id, 5)
    seqs = [seq for seq, _, _ in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate
    text = "".join(d["text"] for _, name, d in first + rest if name == "token.delta")
    assert text == "".join(f"t{i} " for i in range(30)) == rest[-1][2]["content"]
    # After it finished, the same request still works (from memory) without generating.
    again = api.resume(conv["id"], reply_id, len(seqs) - 1)
    assert [name for _, name, _ in again] == ["message.completed"]


def test_a_reply_no_longer_in_memory_resumes_as_its_stored_result(
    api: Api, server: LiveServer
) -> None:
    conv = api.new()
    # As after a restart: the reply is in the database, and the server has no events of it.
    store = ConversationStore(open_database(server.home / DB_NAME))
    with store.db.conn:
        mid = store.add_message(
            conv["id"], parent_id=None, role="assistant", content="the whole answer"
        )
    store.db.conn.close()
    events = api.resume(conv["id"], mid, 7)
    assert [(seq, name) for seq, name, _ in events] == [(8, "message.completed")]
    assert events[0][2]["content"] == "the whole answer"
    assert events[0][2]["status"] == "complete"


def test_an_idempotent_resend_does_not_generate_twice(api: Api, scripted: ScriptedUpstream) -> None:
    conv = api.new()
    before = len(scripted.recorder.requests)
    first = api.events(conv["id"], "hello", headers={"Idempotency-Key": "k-1"})
    again = api.events(conv["id"], "hello", headers={"Idempotency-Key": "k-1"})
    assert len(scripted.recorder.requests) == before + 1
    assert again == first
    assert len(api.http.get(f"/conversations/{conv['id']}/messages").json()["data"]) == 2


def test_cancel_stops_the_engine_and_keeps_the_text(api: Api, scripted: ScriptedUpstream) -> None:
    conv = api.new()
    disconnects = len(scripted.recorder.disconnects)
    with api.http.stream(
        "POST", f"/conversations/{conv['id']}/messages", json={"content": "script:endless"}
    ) as response:
        lines = response.iter_lines()
        events = _read(lines, 3)
        reply_id = events[0][2]["message_id"]
        cancelled = api.http.post(f"/conversations/{conv['id']}/messages/{reply_id}/cancel")
        rest = _read(lines, None)
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["content"].startswith("tick")
    assert rest[-1][1] == "message.completed" and rest[-1][2]["status"] == "cancelled"
    deadline = time.monotonic() + 5
    while len(scripted.recorder.disconnects) == disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(scripted.recorder.disconnects) > disconnects


def test_a_turn_that_cannot_be_stored_stops_its_reply_and_keeps_nothing(
    api: Api, scripted: ScriptedUpstream, server: LiveServer
) -> None:
    conv = api.new()
    requests, disconnects = len(scripted.recorder.requests), len(scripted.recorder.disconnects)
    # The question's insert fails, after the reply's task may have opened the engine request.
    refuse = "BEFORE INSERT ON messages WHEN NEW.content = 'script:endless'"
    with _trigger(server, f"{refuse} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"):
        answer = api.http.post(
            f"/conversations/{conv['id']}/messages", json={"content": "script:endless"}
        )
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "storage_error" and "refused by the test" in error["message"]
    assert api.http.get(f"/conversations/{conv['id']}/messages").json()["data"] == []
    if len(scripted.recorder.requests) > requests:  # it was opened: it must be closed
        deadline = time.monotonic() + 5
        while len(scripted.recorder.disconnects) == disconnects and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(scripted.recorder.disconnects) > disconnects


def test_a_database_failure_on_any_write_is_a_503_and_changes_nothing(
    api: Api, server: LiveServer
) -> None:
    conv = api.new(title="kept")
    # Fails when it runs, as a full disk or a failing file would: SQLite's OperationalError.
    rename = "BEFORE UPDATE OF title ON conversations WHEN NEW.title = 'broken'"
    with _trigger(server, f"{rename} BEGIN INSERT INTO no_such_table VALUES (1); END"):
        answer = api.http.patch(f"/conversations/{conv['id']}", json={"title": "broken"})
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "storage_error" and "no_such_table" in error["message"]
    assert api.http.get(f"/conversations/{conv['id']}").json()["title"] == "kept"


def test_regenerate_and_edit_make_branches_and_switching_follows_them(api: Api) -> None:
    conv = api.new()
    cid = conv["id"]
    first = api.events(cid, "question one")
    question_id, answer_id = first[0][2]["user_message_id"], first[0][2]["message_id"]
    with api.http.stream(
        "POST", f"/conversations/{cid}/messages/{answer_id}/regenerate"
    ) as response:
        regenerated = _read(response, None)
    new_answer = regenerated[0][2]["message_id"]
    siblings = api.http.get(f"/conversations/{cid}/messages/{answer_id}/siblings").json()
    assert [m["id"] for m in siblings["data"]] == [answer_id, new_answer]
    assert api.http.get(f"/conversations/{cid}").json()["current_leaf"] == new_answer
    edited = api.events(cid, "question one, better", parent_id=None)
    edited_q = edited[0][2]["user_message_id"]
    qs = api.http.get(f"/conversations/{cid}/messages/{question_id}/siblings").json()["data"]
    assert [m["id"] for m in qs] == [question_id, edited_q]
    path = api.http.get(f"/conversations/{cid}/messages").json()["data"]
    assert [m["content"] for m in path] == ["question one, better", "ok ok ok"]
    switched = api.http.post(f"/conversations/{cid}/messages/{question_id}/switch").json()
    assert switched["current_leaf"] == new_answer  # the newest reply under that question
    path = api.http.get(f"/conversations/{cid}/messages").json()["data"]
    assert [m["id"] for m in path] == [question_id, new_answer]


def test_listing_pages_filters_patch_and_delete(api: Api) -> None:
    ids = [api.new(title=f"c{i}")["id"] for i in range(5)]
    api.http.patch(
        f"/conversations/{ids[0]}", json={"pinned": True, "tags": ["work"], "folder": "f"}
    ).raise_for_status()
    api.http.patch(f"/conversations/{ids[1]}", json={"archived": True}).raise_for_status()
    seen, cursor = [], None
    while True:
        page = api.http.get(
            "/conversations", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
        ).json()
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    mine = [i for i in seen if i in ids]
    assert mine == [ids[0], ids[4], ids[3], ids[2]]  # newest update first; archived hidden
    assert [c["id"] for c in api.http.get("/conversations?tag=work").json()["data"]] == [ids[0]]
    assert [c["id"] for c in api.http.get("/conversations?folder=f").json()["data"]] == [ids[0]]
    archived = api.http.get("/conversations?archived=true").json()["data"]
    assert ids[1] in [c["id"] for c in archived]
    assert api.http.delete(f"/conversations/{ids[2]}").status_code == 200
    assert api.http.get(f"/conversations/{ids[2]}").status_code == 404
    bad = api.http.patch(f"/conversations/{ids[3]}", json={"pinned": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "pinned"


def test_another_users_conversation_is_404_on_every_route(api: Api, server: LiveServer) -> None:
    conv = api.new()
    reply = api.events(conv["id"], "hello")[0][2]["message_id"]
    other = Api(server, _user_key(server, "mallory"))
    cid = conv["id"]
    routes = [
        ("GET", f"/conversations/{cid}"),
        ("PATCH", f"/conversations/{cid}"),
        ("DELETE", f"/conversations/{cid}"),
        ("GET", f"/conversations/{cid}/messages"),
        ("POST", f"/conversations/{cid}/messages"),
        ("GET", f"/conversations/{cid}/messages/{reply}"),
        ("GET", f"/conversations/{cid}/messages/{reply}/events"),
        ("POST", f"/conversations/{cid}/messages/{reply}/cancel"),
        ("POST", f"/conversations/{cid}/messages/{reply}/regenerate"),
        ("GET", f"/conversations/{cid}/messages/{reply}/siblings"),
        ("POST", f"/conversations/{cid}/messages/{reply}/switch"),
    ]
    for method, path in routes:
        response = other.http.request(method, path, json={"content": "x", "title": "x"})
        assert response.status_code == 404, (method, path, response.text)
        assert "hello" not in response.text
    other.http.close()
    assert api.http.get(f"/conversations/{cid}").status_code == 200


def test_an_untitled_conversation_gets_a_title_after_its_first_exchange(api: Api) -> None:
    conv = api.new(title="")
    api.events(conv["id"], "Plan a trip to Lisbon in May please")
    wait_for(lambda: api.http.get(f"/conversations/{conv['id']}").json()["title"])
    # The stand-in answers "ok" when not streaming: the title came from the model, not from
    # the fallback ("Plan a trip to Lisbon in…").
    assert api.http.get(f"/conversations/{conv['id']}").json()["title"] == "ok"
    titled = api.new(title="Mine")
    api.events(titled["id"], "hello")
    time.sleep(0.3)
    assert api.http.get(f"/conversations/{titled['id']}").json()["title"] == "Mine"


def test_search_ranks_matches_with_snippets_and_follows_edits_and_deletes(api: Api) -> None:
    word = f"zebra{time.time_ns()}"
    a = api.new(title=f"Notes on {word}")
    b = api.new(title="Other")
    api.events(b["id"], f"I saw a {word} at the zoo")
    hits = api.http.get("/search", params={"q": word}).json()["data"]
    assert [h["conversation_id"] for h in hits] == [a["id"], b["id"]]  # title first
    assert f"<mark>{word}</mark>" in hits[1]["snippet"]
    assert not api.http.get("/search", params={"q": word[:-3]}).json()["data"]  # whole words
    as_you_type = api.http.get("/search", params={"q": word[:-3], "prefix": "true"}).json()
    assert [h["conversation_id"] for h in as_you_type["data"]] == [a["id"], b["id"]]
    api.http.patch(f"/conversations/{a['id']}", json={"title": "Renamed"}).raise_for_status()
    api.http.delete(f"/conversations/{b['id']}").raise_for_status()
    assert api.http.get("/search", params={"q": word}).json()["data"] == []
    bad = api.http.get("/search", params={"q": '"" *'})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "q"


def test_search_never_shows_another_users_messages(api: Api, server: LiveServer) -> None:
    word = f"secret{time.time_ns()}"
    conv = api.new()
    api.events(conv["id"], f"my {word}")
    other = Api(server, _user_key(server, "eve"))
    assert other.http.get("/search", params={"q": word}).json()["data"] == []
    other.http.close()


def test_a_search_waiting_for_the_write_lock_leaves_the_server_answering(
    api: Api, server: LiveServer
) -> None:
    """A search first indexes what waits, which needs SQLite's write lock. While another
    process holds it, the search waits in a worker thread: the event loop, and every stream
    on it, goes on."""
    word = f"wombat{time.time_ns()}"
    conv = api.new()
    holder = open_database(server.home / DB_NAME).conn
    holder.isolation_level = None
    holder.execute(
        "INSERT INTO messages (id, conversation_id, role, content) VALUES (?, ?, 'user', ?)",
        (f"msg_{word}", conv["id"], f"a note on {word}"),
    )
    waiting = "SELECT 1 FROM search_pending WHERE rowid = (SELECT rowid FROM messages WHERE id = ?)"
    for _ in range(20):  # the lock, taken while the message still waits to be indexed
        holder.execute("BEGIN IMMEDIATE")
        if holder.execute(waiting, (f"msg_{word}",)).fetchone():
            break
        holder.execute("ROLLBACK")  # the housekeeper indexed it first: a new one
        word = f"wombat{time.time_ns()}"
        holder.execute(
            "INSERT INTO messages (id, conversation_id, role, content) VALUES (?, ?, 'user', ?)",
            (f"msg_{word}", conv["id"], f"a note on {word}"),
        )
    else:
        pytest.fail("the housekeeper indexed every message before the lock was taken")
    found: list[httpx.Response] = []
    searching = threading.Thread(
        target=lambda: found.append(api.http.get("/search", params={"q": word}))
    )
    searching.start()
    try:
        time.sleep(0.3)  # the search is waiting for the lock
        started = time.monotonic()
        health = httpx.get(f"{server.url}/healthz", timeout=2.0)
        assert health.status_code == 200 and time.monotonic() - started < 1.0
        assert not found  # still waiting: the lock is still held
    finally:
        holder.execute("ROLLBACK")
        searching.join(timeout=15)
        holder.close()
    assert found[0].status_code == 200
    assert [hit["message_id"] for hit in found[0].json()["data"]] == [f"msg_{word}"]


def test_export_and_import_round_trip_every_branch(api: Api) -> None:
    conv = api.new(title="Round trip", system_prompt="Be brief.", tags=["x"])
    first = api.events(conv["id"], "question")
    answer = first[0][2]["message_id"]
    with api.http.stream(
        "POST", f"/conversations/{conv['id']}/messages/{answer}/regenerate"
    ) as response:
        _read(response, None)
    exported = api.http.get(f"/conversations/{conv['id']}/export").json()
    imported = api.http.post("/conversations/import", json=exported)
    assert imported.status_code == 201
    again = api.http.get(f"/conversations/{imported.json()['id']}/export").json()

    def shape(export: dict) -> list:
        ids = {m["id"]: i for i, m in enumerate(export["messages"])}
        return [
            (m["role"], m["content"], ids.get(m["parent_id"]), m["status"])
            for m in export["messages"]
        ]

    assert shape(again) == shape(exported) and len(exported["messages"]) == 3
    assert again["conversation"]["title"] == "Round trip"
    assert again["conversation"]["tags"] == ["x"]
    leaf = {m["id"]: i for i, m in enumerate(again["messages"])}[
        again["conversation"]["current_leaf"]
    ]
    assert leaf == 2
    markdown = api.http.get(f"/conversations/{conv['id']}/export?format=markdown").text
    assert markdown.startswith("# Round trip") and "**User:**" in markdown
    bad = api.http.post("/conversations/import", json={"format": "nope"})
    assert bad.status_code == 400


def test_share_links_show_the_branch_until_revoked_or_expired(api: Api, server: LiveServer) -> None:
    conv = api.new(title="<b>Shared</b>")
    api.events(conv["id"], "hello <script>")
    share = api.http.post(f"/conversations/{conv['id']}/shares", json={}).json()
    page = httpx.get(f"{server.url}{share['path']}", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "hello &lt;script&gt;" in page.text and "<script>" not in page.text
    data = httpx.get(f"{server.url}{share['path']}?format=json", timeout=30).json()
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    revoke = api.http.delete(f"/conversations/{conv['id']}/shares/{share['token']}")
    assert revoke.status_code == 200
    assert httpx.get(f"{server.url}{share['path']}", timeout=30).status_code == 404
    short = api.http.post(f"/conversations/{conv['id']}/shares", json={"expires_in": 0.3}).json()
    assert httpx.get(f"{server.url}{short['path']}", timeout=30).status_code == 200
    time.sleep(0.5)
    assert httpx.get(f"{server.url}{short['path']}", timeout=30).status_code == 404


def test_dropped_turns_are_summarized_and_the_summary_stands_in_for_them(
    api: Api, scripted: ScriptedUpstream
) -> None:
    """The `tiny` model has a 100-token window (80 for input): a 100-character question costs
    29 tokens (4 characters a token plus 4), each "ok ok ok" answer 6."""
    conv = api.new(model="tiny")
    questions = [f"question {i} " + "x" * 88 for i in range(4)]
    first = api.events(conv["id"], questions[0])
    api.events(conv["id"], questions[1])
    api.events(conv["id"], questions[2])  # 99 tokens: the first question is dropped
    wait_for(lambda: api.http.get(f"/conversations/{conv['id']}").json()["summary"])
    stored = api.http.get(f"/conversations/{conv['id']}").json()
    assert stored["summary"] == "ok"  # what the stand-in answers
    assert stored["summary_through"] == first[0][2]["user_message_id"]
    api.events(conv["id"], questions[3])
    sent = [r["messages"] for r in scripted.recorder.requests if r.get("stream")][-1]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"] == SUMMARY_PREFIX + "ok"
    assert sent[-1]["content"] == questions[3]
    assert questions[0] not in [m["content"] for m in sent]


def test_crafted_imports_are_refused_and_leave_nothing_behind(api: Api) -> None:
    before = len(api.http.get("/conversations?archived=any&limit=200").json()["data"])
    base = {"format": "chatapp.conversation.v1", "conversation": {"title": "x"}}
    message = {"role": "user", "content": "hi"}
    cases = [
        [{**message, "id": "a"}, {**message, "id": "a", "parent_id": "a"}],  # its own parent
        [{**message, "id": "a", "parent_id": "b"}, {**message, "id": "b", "parent_id": "a"}],
        [{**message, "id": "a", "parent_id": []}],
        [{**message, "id": "a", "usage": "zz"}],
        [{**message, "id": "a", "usage": {"prompt_tokens": 2**70}}],
        [{**message, "id": "a", "status": {}}],
        [{**message, "id": "a", "created_at": [1]}],
    ]
    for messages in cases:
        response = api.http.post("/conversations/import", json={**base, "messages": messages})
        assert response.status_code == 400, (messages, response.text)
    for raw in (b"not json", b"[1, 2]", b""):  # parsed off the event loop, still a clear 400
        response = api.http.post(
            "/conversations/import", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    after = len(api.http.get("/conversations?archived=any&limit=200").json()["data"])
    assert after == before
    assert api.http.get("/models").status_code == 200  # still answering


def test_bad_conversation_input_is_a_400(api: Api) -> None:
    conv = api.new()
    cid = conv["id"]
    assert (
        api.http.post(
            f"/conversations/{cid}/messages", json={"content": "hi", "max_tokens": "abc"}
        ).status_code
        == 400
    )
    assert (
        api.http.post(
            f"/conversations/{cid}/messages", json={"content": "hi", "model": ["x"]}
        ).status_code
        == 400
    )
    assert api.http.post("/conversations", json={"model": {"a": 1}}).status_code == 400
    tampered = base64.urlsafe_b64encode(json.dumps([{}, []]).encode()).decode()
    assert api.http.get(f"/conversations?cursor={tampered}").status_code == 400
    assert api.http.get("/conversations?limit=" + "9" * 5000).status_code == 400
    assert api.http.get("/search?q=x&limit=" + "9" * 5000).status_code == 400
    events = api.http.get(
        f"/conversations/{cid}/messages/x/events", headers={"Last-Event-ID": "9" * 5000}
    )
    assert events.status_code in (400, 404)


def test_a_parent_outside_the_conversation_is_a_400_and_stores_nothing(api: Api) -> None:
    other = api.new()
    elsewhere = api.events(other["id"], "hi")[0][2]["message_id"]
    cid = api.new()["id"]
    for parent, says in ((elsewhere, elsewhere), ("msg_nope", "msg_nope"), (7, "a message id")):
        answer = api.http.post(
            f"/conversations/{cid}/messages", json={"content": "hi", "parent_id": parent}
        )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == "parent_id" and says in error["message"]
    assert api.http.get(f"/conversations/{cid}/messages").json()["data"] == []


def test_two_cancels_at_once_still_store_the_reply(api: Api) -> None:
    conv = api.new()
    with api.http.stream(
        "POST", f"/conversations/{conv['id']}/messages", json={"content": "script:endless"}
    ) as response:
        lines = response.iter_lines()
        reply_id = _read(lines, 2)[0][2]["message_id"]
        path = f"/conversations/{conv['id']}/messages/{reply_id}/cancel"
        threads = [threading.Thread(target=api.http.post, args=(path,)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        _read(lines, None)
    message = api.http.get(f"/conversations/{conv['id']}/messages/{reply_id}").json()
    assert message["status"] == "cancelled"


def test_the_same_idempotency_key_twice_at_once_generates_once(
    api: Api, scripted: ScriptedUpstream
) -> None:
    conv = api.new()
    before = len(scripted.recorder.requests)
    results: list[list[tuple[int, str, dict]]] = []

    def send() -> None:
        results.append(api.events(conv["id"], "hello", headers={"Idempotency-Key": "race-1"}))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2
    assert results[0][0][2]["message_id"] == results[1][0][2]["message_id"]
    assert len(scripted.recorder.requests) == before + 1
