"""What chatapp's own features cost a load, each on and off in one run: persistence (the
usage ledger on the API; chats stored in SQLite against the same chats storing nothing) and
the rate limiter."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

import httpx

from bench.gateway_rows import Tally, describe, in_service, measure
from bench.report import Row
from bench.servers import Server
from bench.timed_streams import Spec, new_chats

__all__ = ["bench_features"]


def _limiter_active(gateway: Server, model: str) -> bool:
    """The [tiers] gateway meters: its answers carry x-ratelimit-* headers."""
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"authorization": f"Bearer {gateway.key}"}
    answer = httpx.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers)
    return answer.status_code == 200 and "x-ratelimit-limit-requests" in answer.headers


async def bench_features(
    spec: Spec, rounds: int, spread: float, engine: Server, gateways: Mapping[str, Server]
) -> list[Row]:
    """Persistence on/off and the limiter on/off, as throughput and CPU ratios: `spec` the
    load of each side, `rounds` of it, `spread` seconds the users' first turns take to start
    in the spread loads.

    Persistence is measured twice, each against the same load with nothing recorded: the
    usage ledger alone (the API's path, against `record_usage = false`), and chats through
    the conversations API, each user's waves the turns of one conversation (opened before
    the clock starts, as a chat is opened before its first question), its questions and
    replies stored in SQLite with their usage rows (the TUI's path), against the same chats
    storing nothing (bench/unstored_serve.py). The load is waves of streams that start
    together, so that every request's admission and accounting (where the features work) is
    on the path of the others; a few waves and rounds a side, because one burst's throughput
    varies by several percent run to run. Chats are measured once more with the users' first
    turns spread over one answer's time, as people's turns arrive (the overhead loads'
    shape). And what the conversations API costs a turn over the plain API (resumable
    replies, their events), with nothing recorded on either, and the chats against that API
    as earlier runs compared them: shown, not judged (no target speaks of them).
    """
    chats = dataclasses.replace(spec, route="conversation")
    spread_chats = dataclasses.replace(chats, start_spread=spread)
    sides = {
        "no-usage": (gateways["no-usage"], spec),
        "default": (gateways["default"], spec),
        "chats": (gateways["default"], chats),
        "chats, unstored": (gateways["unstored"], chats),
        "tiers": (gateways["tiers"], spec),
        "chats, spread": (gateways["default"], spread_chats),
        "chats, unstored, spread": (gateways["unstored"], spread_chats),
    }
    names = list(sides)
    tallies = {name: Tally() for name in names}
    used = {gateway.name: gateway for gateway, _ in sides.values()}.values()
    notes = [note for gateway in used if (note := await in_service(gateway, engine.name))]
    for _ in range(rounds):
        for name in names:
            gateway, side = sides[name]
            if side.route == "conversation":  # opened before, as a user opens a new chat
                made = await new_chats(gateway.base_url, side, api_key=gateway.key)
                side = dataclasses.replace(side, conversations=made)
            await measure(gateway, side, engine, tallies[name])
        names = names[1:] + names[:1]  # rotated: no side runs twice in a row
    active = await asyncio.to_thread(_limiter_active, gateways["tiers"], engine.name)
    load = f"{spec.concurrency} streams"
    if spec.requests > spec.concurrency:
        load += f" x {spec.requests // spec.concurrency} waves"
    spread_load = f"{spec.concurrency} streams, first turns over {spread:.1f} s"
    rows = [
        *notes,
        Row(f"{load}, record_usage = false, no tiers", describe(tallies["no-usage"])),
        Row(f"{load}, record_usage = true, no tiers", describe(tallies["default"])),
        Row(f"{load}, chats (conversations API), no tiers", describe(tallies["chats"])),
        Row(f"{load}, chats storing nothing", describe(tallies["chats, unstored"])),
        Row(f"{load}, record_usage = true, \\[tiers]", describe(tallies["tiers"])),
        Row(f"{spread_load}, chats", describe(tallies["chats, spread"])),
        Row(f"{spread_load}, chats storing nothing", describe(tallies["chats, unstored, spread"])),
    ]
    judged = (
        ("persistence (usage outbox + ledger) on / off", "default", "no-usage"),
        ("persistence (chats in SQLite + ledger) on / off", "chats", "chats, unstored"),
        (
            "the same, turns spread over an answer's time",
            "chats, spread",
            "chats, unstored, spread",
        ),
        ("rate limiter on / off (\\[tiers] admitting all)", "tiers", "default"),
    )
    shown = (
        ("the conversations API ÷ the API, nothing recorded", "chats, unstored", "no-usage"),
        ("chats ÷ the API with nothing recorded", "chats", "no-usage"),
    )
    for what, on, off in (*judged, *shown):
        ratio = tallies[on].stats.throughput / tallies[off].stats.throughput
        cpu = tallies[on].cpu_per_1k / tallies[off].cpu_per_1k
        throughput = Row(f"{what}, throughput", f"{ratio:.3f}x")
        if (what, on, off) in judged:
            throughput = Row(throughput.what, throughput.measured, ">= 0.98x", ratio >= 0.98)
        rows += [throughput, Row(f"{what}, gateway CPU a token", f"{cpu:.2f}x")]
    errors = sum(t.stats.errors for t in tallies.values())
    rows.append(
        Row(
            "limiter metering every request (x-ratelimit headers), refusals",
            f"{'yes' if active else 'NO'}, {errors} errors",
            "yes, 0",
            active and errors == 0,
        )
    )
    return rows
