"""Rolling summaries: when a conversation's oldest turns no longer fit the model's window, the
model writes a short summary of them (building on the previous one), stored to stand in for
them in later prompts. Runs on its own task after a reply; models opt in with `summarize`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from chatapp.accounts import Principal
from chatapp.asides import ask
from chatapp.completions import Completions
from chatapp.conversations import ConversationStore
from chatapp.errors import RequestError
from chatapp.metering import Meter
from chatapp.upstreams import ModelPool

__all__ = ["write_summary"]

_ASK = (
    "Summarize the conversation below in at most five sentences, keeping names, facts, "
    "decisions and open questions. Reply with the summary only."
)
log = logging.getLogger("chatapp.summaries")


async def write_summary(
    *,
    store: ConversationStore,
    conversation_id: str,
    principal: Principal,
    previous: str | None,
    dropped: Sequence[Mapping[str, Any]],
    pool: ModelPool,
    completions: Completions,
    meter: Meter,
) -> str | None:
    """Summarize `dropped` (after `previous`), store it as covering the last of them."""
    if not dropped or not dropped[-1].get("id"):
        return None
    lines = [f"Earlier summary: {previous}"] if previous else []
    lines += [f"{m['role']}: {m['content']}" for m in dropped]
    try:
        summary = await ask(
            meter=meter,
            completions=completions,
            principal=principal,
            pool=pool,
            system=_ASK,
            user="\n".join(lines)[-8000:],
            max_tokens=min(256, pool.model.output_reserve),
            conversation_id=conversation_id,
        )
    except (RequestError, ValueError, KeyError, IndexError, TypeError) as exc:
        log.info("no summary for %s this time: %s", conversation_id, exc)
        return None
    summary = summary.strip()
    if summary:
        await store.group_commit.run(  # as a title's: never SQLite's busy handler on the loop
            lambda conn: conn.execute(
                "UPDATE conversations SET summary = ?, summary_through = ? WHERE id = ?",
                (summary, dropped[-1]["id"], conversation_id),
            )
        )
    return summary or None
