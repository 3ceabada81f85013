"""create_app: the gateway built from a routes list and a lifespan that runs the engines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import anyio
import duckdb
import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chatapp.accounts import Accounts
from chatapp.completions import Completions
from chatapp.config import Config
from chatapp.conversations import ConversationStore
from chatapp.engine_transport import engine_client
from chatapp.engines import EngineSupervisor
from chatapp.generation import GenerationRegistry
from chatapp.group_commit import GroupCommit
from chatapp.health import check_forever
from chatapp.housekeeping import Housekeeper
from chatapp.ledger import LEDGER_NAME, Ledger
from chatapp.limiter import Limiter
from chatapp.metering import Meter
from chatapp.moderation import Moderator
from chatapp.paths import DB_NAME
from chatapp.quotas import Quotas
from chatapp.searcher import Searcher
from chatapp.store import open_database
from chatapp.upstreams import build_pools
from server.errors import exception_handlers
from server.metrics import GatewayMetrics, engine_metrics
from server.metrics import metrics as metrics_route
from server.plain_endpoint import PlainEndpoint
from server.request_log import RequestContext, note_usage
from server.routes import admin, admin_conversations, directory, fleet, sharing
from server.routes import conversations as conv
from server.routes.chat import chat_completions
from server.routes.health import healthz, readyz
from server.routes.models import list_models
from server.routes.moderation import moderation_log
from server.routes.search import search_conversations
from server.routes.tools import list_tools
from server.routes.usage import own_usage
from server.sse import SERVER_SEND
from server.state import GatewayState

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("chatapp.server")
# SQLite upkeep (a step of search-index merging, a WAL checkpoint) runs this often: small
# steps keep the WAL short and each checkpoint quick.
TIDY_SECONDS = 1.0

# Starlette tries routes in order, a few microseconds each: the routes every chat turn or API
# request takes come first (none of them matches another's paths, so the order changes no
# answer). A chat turn's was the fourteenth, 30 µs of matching on the busiest path.
routes = [
    Route("/v1/chat/completions", PlainEndpoint(chat_completions), methods=["POST"]),
    Route("/v1/conversations/{cid}/messages", PlainEndpoint(conv.send_message), methods=["POST"]),
    Route(
        "/v1/conversations/{cid}/messages/{mid}/events",
        PlainEndpoint(conv.follow_events),
        methods=["GET"],
    ),
    Route(
        "/v1/conversations/{cid}/messages/{mid}/regenerate",
        PlainEndpoint(conv.regenerate),
        methods=["POST"],
    ),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/usage", own_usage, methods=["GET"]),
    Route("/v1/tools", list_tools, methods=["GET"]),
    Route("/v1/conversations", conv.conversations, methods=["GET", "POST"]),
    Route("/v1/conversations/import", sharing.import_conversation, methods=["POST"]),
    Route("/v1/conversations/{cid}/export", sharing.export, methods=["GET"]),
    Route("/v1/conversations/{cid}/shares", sharing.create_share, methods=["POST"]),
    Route("/v1/conversations/{cid}/shares/{token}", sharing.revoke_share, methods=["DELETE"]),
    Route("/share/{token}", sharing.public_share, methods=["GET"]),
    Route("/v1/search", search_conversations, methods=["GET"]),
    Route("/v1/conversations/{cid}", conv.conversation, methods=["GET", "PATCH", "DELETE"]),
    Route("/v1/conversations/{cid}/messages", conv.list_messages, methods=["GET"]),
    Route("/v1/conversations/{cid}/messages/{mid}", conv.get_message, methods=["GET"]),
    Route("/v1/conversations/{cid}/messages/{mid}/cancel", conv.cancel_reply, methods=["POST"]),
    Route("/v1/conversations/{cid}/messages/{mid}/siblings", conv.siblings, methods=["GET"]),
    Route("/v1/conversations/{cid}/messages/{mid}/switch", conv.switch_branch, methods=["POST"]),
    Route("/admin/tiers", admin.list_tiers, methods=["GET"]),
    Route("/admin/limits/{level}/{subject_id:int}", admin.get_limits, methods=["GET"]),
    Route("/admin/limits/{level}/{subject_id:int}", admin.set_limits, methods=["PUT", "DELETE"]),
    Route("/admin/{table:str}/{subject_id:int}/tier", admin.set_tier, methods=["PUT"]),
    Route("/admin/quota/explain", admin.explain_quota, methods=["GET"]),
    Route("/admin/quota/{level}/{ref}", admin.quota, methods=["GET"]),
    Route("/admin/tiers/{name}", admin.tier, methods=["GET"]),
    Route("/admin/tiers/{name}/limits", admin.set_tier_limits, methods=["PUT", "DELETE"]),
    Route("/admin/orgs", directory.orgs, methods=["GET", "POST"]),
    Route("/admin/orgs/{ref}", directory.org, methods=["GET", "PATCH"]),
    Route("/admin/users", directory.users, methods=["GET", "POST"]),
    Route("/admin/users/{ref}", directory.user, methods=["GET", "PATCH", "DELETE"]),
    Route("/admin/keys", directory.keys, methods=["GET", "POST"]),
    Route("/admin/keys/{ref}", directory.key, methods=["GET", "PATCH", "DELETE"]),
    Route("/admin/conversations/export", admin_conversations.export_all, methods=["GET"]),
    Route("/admin/conversations/import", admin_conversations.import_one, methods=["POST"]),
    Route("/admin/conversations/purge", admin_conversations.purge_deleted, methods=["POST"]),
    Route("/admin/usage", admin.usage_report, methods=["GET"]),
    Route("/admin/moderation", moderation_log, methods=["GET"]),
    Route("/admin/models", fleet.models_status, methods=["GET"]),
    Route("/admin/fleet", fleet.fleet_status, methods=["GET"]),
    Route("/admin/fleet/drain", fleet.drain, methods=["POST"]),
    Route("/admin/fleet/undrain", fleet.undrain, methods=["POST"]),
    Route("/metrics", metrics_route, methods=["GET"]),
    Route("/metrics/engines", engine_metrics, methods=["GET"]),
    Route("/metrics/engines/{upstream:path}", engine_metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]


def create_app(
    config: Config,
    home: Path,
    *,
    on_ready: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
) -> Starlette:
    """The gateway for `config`, keeping its files in `home` (which init has prepared).

    Engines are checked here (a ConfigError before anything starts) and launched by the
    lifespan; `on_ready` is called once, when every model can first take requests, and
    `on_stopped` last, once everything has stopped.
    """
    pools = build_pools(config, home / "logs")
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = open_database(home / DB_NAME)
        # Checkpoints run from the housekeeper's thread, never inside a request's commit.
        db.conn.execute("PRAGMA wal_autocheckpoint = 0")
        housekeeper = Housekeeper(home / DB_NAME)
        searcher = Searcher(home / DB_NAME)
        ledger = Ledger(home / LEDGER_NAME, home / DB_NAME)
        # The writers on the loop share commits: what ends or starts in one turn of it.
        group_commit = GroupCommit(db.conn)
        meter = Meter(config, db, Limiter(), Quotas(config, db), group_commit)
        moved = await anyio.to_thread.run_sync(ledger.flush)
        replayed = await anyio.to_thread.run_sync(meter.rebuild, ledger)
        conversations = ConversationStore(db, group_commit)
        repaired = conversations.repair_interrupted()
        if repaired:
            log.info("%d reply(ies) cut off by the last shutdown are now incomplete", repaired)
        purged = conversations.purge(timedelta(days=config.server.deleted_retention_days))
        if purged:
            log.info("purged %d conversation(s) deleted over the retention period", purged)
        replies = GenerationRegistry(grace_seconds=config.server.resume_grace_seconds)
        log.info(
            "usage ledger: %d leftover event(s) moved, %d replayed into quotas", moved, replayed
        )
        timeout = httpx.Timeout(connect=5.0, read=600.0, write=30.0, pool=None)
        client = engine_client(timeout)
        supervisors = [u.supervisor for p in pools.values() for u in p.upstreams if u.supervisor]
        for supervisor in supervisors:
            supervisor.start()
        moderator = Moderator(config.moderation, db, client)
        app.state.chatapp = GatewayState(
            config=config,
            accounts=Accounts(db),
            pools=pools,
            client=client,
            completions=Completions(client, on_token_gap=metrics.observe_gap),
            started_at=int(time.time()),
            meter=meter,
            ledger=ledger,
            conversations=conversations,
            replies=replies,
            moderator=moderator,
            metrics=metrics,
            searcher=searcher,
            db_path=home / DB_NAME,
        )
        meter.observers += [metrics.observe_usage, note_usage]
        moderator.observers.append(metrics.observe_moderation)
        metrics.watch(app.state.chatapp)
        announce = asyncio.create_task(_announce_when_ready(supervisors, on_ready))
        flusher = asyncio.create_task(_flush_forever(ledger, config.server.ledger_flush_seconds))
        tidier = asyncio.create_task(_tidy_forever(housekeeper, TIDY_SECONDS))
        checker = asyncio.create_task(
            check_forever(pools.values(), client, config.server.health_check_seconds)
        )
        # What start-up made (modules, config, pools) lives as long as the process: out of the
        # collector's sight, a full collection under load pauses every stream ~30 ms, not ~90.
        gc.freeze()
        try:
            yield
        finally:
            try:
                announce.cancel()
                flusher.cancel()
                tidier.cancel()
                checker.cancel()
                await replies.shutdown()  # replies in flight are stored as incomplete
                log.info("shutting down: stopping %d engine(s)", len(supervisors))
                await asyncio.gather(*(s.stop() for s in supervisors))
                await client.aclose()
                await anyio.to_thread.run_sync(ledger.flush)
                ledger.close()
                housekeeper.close()
                await searcher.aclose()
                db.conn.close()
                log.info("stopped")
            finally:  # also when a step above failed: its error is among the lines to write
                if on_stopped is not None:
                    on_stopped()

    return Gateway(
        routes=routes,
        middleware=[Middleware(RequestContext, metrics=metrics)],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )


class Gateway(Starlette):
    """Starlette that keeps the server's own `send` in the scope, for SSE bodies (server/sse.py).

    Stream frames skip the middleware, so none may rewrite bodies (GZipMiddleware would hold
    a response's start until its first body, which then arrives before it).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        try:
            await super().__call__(scope, receive, send)
        finally:
            # uvicorn's `send` is a method of the request's cycle, which holds this scope: left
            # here, each request would end as a reference cycle for the garbage collector.
            del scope[SERVER_SEND]


async def _flush_forever(ledger: Ledger, every: float) -> None:
    """Move outbox rows into the ledger, off the event loop, every `every` seconds.

    Not more often: DuckDB takes the GIL back several times a statement, and each flush held
    the event loop up for milliseconds (every stream's next token with it). Nothing waits on
    it: reports flush first, and rows wait safely in the SQLite outbox.
    """
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(ledger.flush)
        except (OSError, sqlite3.Error, duckdb.Error):
            # The rows stay in the outbox and the next round retries them.
            log.exception("usage ledger: flush failed; will retry")


async def _tidy_forever(housekeeper: Housekeeper, every: float) -> None:
    """Off the event loop: merge the search index a little and checkpoint SQLite's WAL."""
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(housekeeper.tidy)
        except sqlite3.Error:
            log.exception("sqlite housekeeping failed; will retry")


async def _announce_when_ready(
    supervisors: list[EngineSupervisor], on_ready: Callable[[], None] | None
) -> None:
    await asyncio.gather(*(s.ready_event.wait() for s in supervisors))
    log.info("all engines ready")
    if on_ready is not None:
        on_ready()
