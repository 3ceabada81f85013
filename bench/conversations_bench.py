"""Measure the conversations issue's targets on one user with 10,000 chats and 1,000,000 messages.

Run as `.venv/bin/python bench/conversations_bench.py` (add `--quick` for a smoke test). The
data is made in bulk SQL on a real SQLite file in a temp dir, then every target is timed through
the store's own API on a fresh connection opened the way the server opens it.

Messages are inserted with the FTS insert trigger dropped and the index built once by FTS5's
'rebuild' (then the trigger is put back): on 200,000 messages that took 4.0 s against 16.5 s
through the trigger, and the index it gives is the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import random
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from report import Row, console_for, percentile, print_facts, print_table

from chatapp.accounts import Accounts
from chatapp.conversations import ConversationStore
from chatapp.housekeeping import Housekeeper
from chatapp.ids import new_id
from chatapp.search import search
from chatapp.store import open_database
from chatapp.usage import UsageEvent, write_outbox

MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0
MODELS = ("gpt-small", "gpt-medium", "gpt-large")

# The head of the word-frequency curve is real English, so common-word searches behave as they
# would on real chats; the tail is made-up words, as distinctive as names and jargon are.
COMMON = """the to and of a in is it you that for this on with be are as can i not or your have
if but by at from an what will we do so my use how there all one which more about was like
they should also when me it's would some just here need get these has out them then make any
other only each than new way want set its no into could may first up time see because two
example code where does way know over well most using file data value run our such both""".split()
TOPICAL = """python function error install server request response model token config database
query table index string list array class method module package import return loop script test
version update network memory cache thread async await stream client api key user account login
password email message chat reply prompt system output input format json yaml docker container
image build deploy linux windows shell command terminal path folder directory branch commit merge
git review bug fix issue release schedule meeting budget invoice customer order payment report
chart sales market price cost recipe flour sugar butter oven garden tomato travel flight hotel
train ticket visa museum beach mountain river weather rain snow summer winter health sleep run
workout protein vitamin doctor fever cough essay chapter novel poem author history war empire
physics energy gravity orbit planet galaxy chemistry acid molecule biology cell gene protein
""".split()


@dataclass(frozen=True)
class Sizes:
    """How much data and how many calls; `--quick` shrinks everything for a smoke test."""

    conversations: int
    messages: int
    long_conversations: int
    chunk: int
    listing_calls: int
    page_calls: int
    search_calls: int
    turns: int


FULL = Sizes(
    conversations=10_000,
    messages=1_000_000,
    long_conversations=500,
    chunk=50_000,
    listing_calls=300,
    page_calls=300,
    search_calls=200,
    turns=2_000,
)
QUICK = dataclasses.replace(
    FULL,
    conversations=1_000,
    messages=100_000,
    long_conversations=50,
    listing_calls=100,
    page_calls=100,
    search_calls=100,
    turns=300,
)


@dataclass(frozen=True)
class Corpus:
    """The generated user's data that the timed calls pick from."""

    user_id: int
    org_id: int
    long_ids: list[str]  # live conversations with 200+ messages on their branch
    leaves: dict[str, str]  # live conversation -> its current leaf
    vocabulary: list[str]  # most frequent first


def timed_ms(calls: Sequence[Callable[[], object]]) -> list[float]:
    """Milliseconds each call takes, sorted."""
    samples = []
    for call in calls:
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return sorted(samples)


def latency_rows(what: str, samples: list[float], q: float, limit_ms: float | None) -> list[Row]:
    """A p50 fact and a p`q` row, judged against `limit_ms` when there is one."""
    tail = percentile(samples, q)
    return [
        Row(f"{what} p50", f"{percentile(samples, 50):.2f} ms"),
        Row(
            f"{what} p{q:g} (max {samples[-1]:.1f} ms)",
            f"{tail:.2f} ms",
            "-" if limit_ms is None else f"< {limit_ms:g} ms",
            None if limit_ms is None else tail < limit_ms,
        ),
    ]


def iso(ts: float) -> str:
    """The store's timestamp format, so string order is time order."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Writer:
    """Chat-like text: Zipf-distributed words in a pool of sentences, 20-80 words a message."""

    def __init__(self, rng: random.Random, sentences: int = 100_000) -> None:
        self.rng = rng
        made: set[str] = set(COMMON) | set(TOPICAL)
        tail: list[str] = []
        consonants = "b c d f g h k l m n p r s t v w z ch sh th st tr pl br".split()
        vowels = "a e i o u ai ea ou io".split()
        while len(tail) < 3_700:
            word = "".join(
                rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.choice((1, 2, 2, 3)))
            )
            word += rng.choice(("", "", "n", "s", "r", "t", "l"))
            if word not in made:
                made.add(word)
                tail.append(word)
        rest = TOPICAL + tail
        rng.shuffle(rest)
        self.vocabulary = list(dict.fromkeys(COMMON + rest))
        cum = list(itertools.accumulate(1 / (rank + 2.7) for rank in range(len(self.vocabulary))))
        self.sentences = []
        for _ in range(sentences):
            words = rng.choices(self.vocabulary, cum_weights=cum, k=rng.randint(4, 12))
            self.sentences.append((" ".join(words).capitalize() + ".", len(words)))

    def text(self, low: int = 20, high: int = 80) -> str:
        """Whole sentences until at least `low`..`high - 12` words (a sentence has <= 12)."""
        target, count, parts = self.rng.randint(low, high - 12), 0, []
        while count < target:
            sentence, words = self.rng.choice(self.sentences)
            parts.append(sentence)
            count += words
        return " ".join(parts)

    def title(self) -> str:
        words = self.rng.sample(self.vocabulary[len(COMMON) :][:1_500], self.rng.randint(2, 5))
        return " ".join(words).capitalize()


def message_counts(sizes: Sizes, rng: random.Random) -> list[int]:
    """Long chats (200-240 messages) spread among ~100-message ones; exactly `messages` in all."""
    long = [rng.randint(200, 240) for _ in range(sizes.long_conversations)]
    short = [rng.randint(10, 180) for _ in range(sizes.conversations - len(long))]
    scale = (sizes.messages - sum(long)) / sum(short)
    short = [max(2, min(199, round(n * scale))) for n in short]
    while (gap := sizes.messages - sum(long) - sum(short)) != 0:
        i = rng.randrange(len(short))
        short[i] = max(2, min(199, short[i] + (1 if gap > 0 else -1)))
    counts = long + short
    rng.shuffle(counts)
    return counts


def timeline(counts: list[int], rng: random.Random, now: float) -> list[list[float]]:
    """When each message was written: chats over a year, replies in seconds, some resumed later."""
    times = []
    for n in counts:
        gaps = []
        for j in range(1, n):
            if j % 2:  # the reply to a question
                gaps.append(rng.uniform(2, 40))
            elif rng.random() < 0.03:  # come back hours or days later
                gaps.append(rng.uniform(HOUR, 10 * DAY))
            else:
                gaps.append(rng.uniform(20, 10 * MINUTE))
        offsets = [0.0, *itertools.accumulate(gaps)]
        start = now - rng.uniform(offsets[-1] + MINUTE, 365 * DAY)
        times.append([start + offset for offset in offsets])
    return times


def generate(
    path: Path, sizes: Sizes, writer: Writer, rng: random.Random
) -> tuple[Corpus, list[Row]]:
    """Fill a fresh DB: one user, its conversations and their message chains, in bulk."""
    started = time.perf_counter()
    db = open_database(path)
    accounts = Accounts(db)
    org_id = accounts.ensure_org("bench")
    user_id = accounts.ensure_user("bench", org_id=org_id)
    now = time.time()
    counts = message_counts(sizes, rng)
    times = timeline(counts, rng, now)
    by_start = sorted(range(len(counts)), key=lambda c: times[c][0])
    conv_ids = [""] * len(counts)
    for c in by_start:
        conv_ids[c] = new_id("conv")
    # Ids in creation-time order across all chats, as a live server hands them out.
    events = sorted((t, c, j) for c, ts in enumerate(times) for j, t in enumerate(ts))
    msg_ids: list[list[str]] = [[""] * n for n in counts]
    for _, c, j in events:
        msg_ids[c][j] = new_id("msg")

    long_ids, leaves, conversations = [], {}, []
    for c in by_start:
        cid, last = conv_ids[c], times[c][-1]
        roll = rng.random()
        archived = counts[c] < 200 and roll < 0.03
        deleted = iso(last + DAY) if counts[c] < 200 and 0.03 <= roll < 0.04 else None
        if not deleted:
            leaves[cid] = msg_ids[c][-1]
            if counts[c] >= 200:
                long_ids.append(cid)
        conversations.append(
            (cid, user_id, writer.title(), rng.choice(MODELS), msg_ids[c][-1])
            + (int(archived), iso(times[c][0]), iso(last), deleted)
        )
    conn = db.conn
    conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading only
    with conn:
        conn.executemany(
            "INSERT INTO conversations (id, user_id, title, model, current_leaf, archived,"
            " created_at, updated_at, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            conversations,
        )
        trigger = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'messages_fts_insert'"
        ).fetchone()[0]
        conn.execute("DROP TRIGGER messages_fts_insert")
    insert = (
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, model, status,"
        " finish_reason, prompt_tokens, completion_tokens, request_id, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    for lo in range(0, len(events), sizes.chunk):
        rows: list[tuple[object, ...]] = []
        for t, c, j in events[lo : lo + sizes.chunk]:
            mid, stamp = msg_ids[c][j], iso(t)
            head = (mid, conv_ids[c], msg_ids[c][j - 1] if j else None)
            if j % 2 == 0:
                question = (writer.text(), None, "complete", None, None, None, None)
                rows.append((*head, "user", *question, stamp, stamp))
            else:
                reply = (writer.text(), rng.choice(MODELS), "complete", "stop")
                usage = (rng.randint(50, 4_000), rng.randint(20, 800), f"req_{mid[4:]}")
                rows.append((*head, "assistant", *reply, *usage, stamp, stamp))
        with conn:
            conn.executemany(insert, rows)
    loaded = time.perf_counter()
    with conn:
        conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")
        conn.execute(trigger)
    indexed = time.perf_counter()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    assert total == sizes.messages, (total, sizes.messages)
    conn.close()
    size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20
    facts = [
        Row(
            f"generate {len(counts):,} chats, {total:,} messages ({len(long_ids)} of 200+),"
            " bulk insert",
            f"{loaded - started:.1f} s",
        ),
        Row(
            "index them for FTS by one 'rebuild' (trigger off while loading)",
            f"{indexed - loaded:.1f} s",
        ),
        Row("database size after a checkpoint", f"{size_mb:,.0f} MiB"),
    ]
    return Corpus(user_id, org_id, long_ids, leaves, writer.vocabulary), facts


def bench_listing(store: ConversationStore, corpus: Corpus, sizes: Sizes) -> list[Row]:
    """The first page, then pages found by following every cursor to the end."""
    uid = corpus.user_id
    cursors: list[str] = []
    seen, page = 0, store.listing(uid, limit=50)
    while True:
        seen += len(page.items)
        if page.next_cursor is None:
            break
        cursors.append(page.next_cursor)
        page = store.listing(uid, limit=50, cursor=page.next_cursor)
    archived = store.db.execute("SELECT count(*) FROM conversations WHERE archived = 1").fetchone()
    assert seen == len(corpus.leaves) - archived[0], (seen, len(corpus.leaves), archived)
    rng = random.Random(2)
    first = timed_ms([partial(store.listing, uid, limit=50)] * sizes.listing_calls)
    deep = timed_ms(
        [
            partial(store.listing, uid, limit=50, cursor=cursor)
            for cursor in rng.choices(cursors, k=sizes.listing_calls)
        ]
    )
    what = f"listing 50 of {seen:,}"
    return [
        *latency_rows(f"{what}, first page", first, 99, 20),
        *latency_rows(f"{what}, random page 2-{len(cursors) + 1}", deep, 99, 20),
    ]


def bench_page(store: ConversationStore, corpus: Corpus, sizes: Sizes) -> list[Row]:
    """The newest 200 messages of random long chats, as the TUI opens one."""
    rng = random.Random(3)
    picks = [rng.choice(corpus.long_ids) for _ in range(sizes.page_calls)]
    page = store.page(corpus.user_id, picks[0], limit=200, before=None)
    assert len(page.items) == 200 and page.items[-1]["id"] == corpus.leaves[picks[0]]
    samples = timed_ms(
        [partial(store.page, corpus.user_id, cid, limit=200, before=None) for cid in picks]
    )
    return latency_rows(f"page of 200, {len(corpus.long_ids)} chats of 200+", samples, 99, 20)


def search_queries(vocabulary: list[str], rng: random.Random, n: int) -> list[tuple[str, str]]:
    """(kind, query) in a mix: mostly distinctive words, some common ones, pairs and prefixes."""
    common = vocabulary[:100]
    mid = vocabulary[100:1_000]
    rare = vocabulary[1_000:]
    kinds: dict[str, Callable[[], str]] = {
        "common word (top 100)": lambda: rng.choice(common),
        "mid word (rank 100-1k)": lambda: rng.choice(mid),
        "rare word (rank 1k+)": lambda: rng.choice(rare),
        "two words (mid + rare)": lambda: f"{rng.choice(mid)} {rng.choice(rare)}",
        "prefix (3 letters)": lambda: rng.choice([w for w in mid if len(w) > 4])[:3],
    }
    weights = (15, 30, 25, 15, 15)
    return [(kind, kinds[kind]()) for kind in rng.choices(list(kinds), weights=weights, k=n)]


def bench_search(store: ConversationStore, corpus: Corpus, sizes: Sizes) -> list[Row]:
    """search() over the user's messages and titles, by kind of query and over the whole mix."""
    rng = random.Random(4)
    queries = search_queries(corpus.vocabulary, rng, sizes.search_calls)
    db, uid = store.db, corpus.user_id
    assert search(db, uid, corpus.vocabulary[0]), "the commonest word should match"
    by_kind: dict[str, list[float]] = {}
    hits = 0
    for kind, query in queries:
        start = time.perf_counter_ns()
        hits += bool(search(db, uid, query, limit=20, prefix=kind.startswith("prefix")))
        by_kind.setdefault(kind, []).append((time.perf_counter_ns() - start) / 1e6)
    rows = []
    for kind, samples in sorted(by_kind.items()):
        samples.sort()
        rows.append(
            Row(
                f"  search {kind}, p50 / p95 of {len(samples)}",
                f"{percentile(samples, 50):.1f} / {percentile(samples, 95):.1f} ms",
            )
        )
    overall = sorted(itertools.chain.from_iterable(by_kind.values()))
    what = f"search, mix of {len(overall)} queries ({hits} with hits)"
    return [*latency_rows(what, overall, 95, 50), *rows]


def bench_turns(
    store: ConversationStore, corpus: Corpus, writer: Writer, sizes: Sizes
) -> list[Row]:
    """The two writes of a chat turn on random chats: start (question + empty reply), finish."""
    rng = random.Random(5)
    conn = store.db.conn
    # As the server runs: no checkpoint inside a request's commit; a housekeeper thread merges
    # the search index and checkpoints the WAL once a second.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    housekeeper = Housekeeper(Path(conn.execute("PRAGMA database_list").fetchone()[2]))
    stop = threading.Event()

    def tidy_every_second() -> None:
        while not stop.wait(1.0):
            housekeeper.tidy()

    tidier = threading.Thread(target=tidy_every_second, daemon=True)
    tidier.start()
    leaves = dict(corpus.leaves)
    live = list(leaves)
    start_ms, finish_ms = [], []
    for i in range(sizes.turns):
        cid = rng.choice(live)
        question, answer = writer.text(), writer.text(40, 300)
        model = rng.choice(MODELS)
        prompt, completion = rng.randint(50, 4_000), rng.randint(20, 800)
        t0 = time.perf_counter_ns()
        with conn:
            asked = store.add_message(
                cid, parent_id=leaves[cid], role="user", content=question, conn=conn
            )
            reply = store.add_message(
                cid,
                parent_id=asked,
                role="assistant",
                content="",
                status="streaming",
                model=model,
                conn=conn,
            )
        t1 = time.perf_counter_ns()
        request_id = f"bench-{i}"
        event = UsageEvent(
            request_id=request_id,
            ts=time.time(),
            key_id=1,
            user_id=corpus.user_id,
            org_id=corpus.org_id,
            conversation_id=cid,
            model=model,
            upstream="local",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=0,
            ttft_ms=180.0,
            latency_ms=2_500.0,
            status="ok",
            cost=(prompt + 4 * completion) * 1e-6,
        )
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        t2 = time.perf_counter_ns()
        with conn:
            store.finish_message(
                conn,
                reply,
                content=answer,
                status="complete",
                finish_reason="stop",
                usage=usage,
                request_id=request_id,
            )
            write_outbox(conn, event)
        t3 = time.perf_counter_ns()
        leaves[cid] = reply
        start_ms.append((t1 - t0) / 1e6)
        finish_ms.append((t3 - t2) / 1e6)
    stop.set()
    tidier.join()
    housekeeper.close()
    outbox = conn.execute("SELECT count(*) FROM usage_outbox").fetchone()[0]
    assert outbox == sizes.turns, (outbox, sizes.turns)
    what = f"turn of {sizes.turns:,} on random chats"
    return [
        *latency_rows(f"{what}: start (question + empty reply)", sorted(start_ms), 99, None),
        *latency_rows(f"{what}: finish (reply + outbox)", sorted(finish_ms), 99, 2),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Make the data, run the four targets and print the table; verdicts live in the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    console = console_for(130)
    print_facts(console, quick=args.quick)
    started = time.perf_counter()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chatapp.db"
        with console.status("generating..."):
            writer = Writer(rng)
            corpus, rows = generate(path, sizes, writer, rng)
        # A fresh connection with the server's settings (its small default page cache).
        store = ConversationStore(open_database(path))
        with console.status("listing..."):
            rows += bench_listing(store, corpus, sizes)
        with console.status("page..."):
            rows += bench_page(store, corpus, sizes)
        with console.status("search..."):
            rows += bench_search(store, corpus, sizes)
        with console.status("turns..."):
            rows += bench_turns(store, corpus, writer, sizes)
        store.db.conn.close()

    print_table(console, f"conversations targets ({time.perf_counter() - started:.0f} s)", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
