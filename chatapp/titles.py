"""Conversation titles: a few words written by the model after the first exchange, with the
question's first words as the fallback. Runs on its own task: it never delays an answer."""

from __future__ import annotations

import logging
import re

from chatapp.accounts import Principal
from chatapp.asides import ask
from chatapp.completions import Completions
from chatapp.conversations import ConversationStore
from chatapp.errors import RequestError
from chatapp.metering import Meter
from chatapp.upstreams import ModelPool

__all__ = ["clean_title", "fallback_title", "write_title"]

_MAX_CHARS = 60
_ASK = (
    "Write a title of at most six words for a conversation that starts with the message "
    "below. Reply with the title only, no quotes."
)
log = logging.getLogger("chatapp.titles")


def fallback_title(question: str) -> str:
    """The question's first six words, cut to fit."""
    words = question.split()
    title = " ".join(words[:6]) + ("…" if len(words) > 6 else "")
    return title[:_MAX_CHARS].strip() or "New conversation"


def clean_title(text: str) -> str:
    """The model's answer as a title: first line, no quotes or 'Title:', not too long."""
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    line = re.sub(r"^\s*(title\s*:\s*)", "", line, flags=re.IGNORECASE)
    line = line.strip().strip("\"'`*#").strip().rstrip(".")
    return line[:_MAX_CHARS].strip()


async def write_title(
    *,
    store: ConversationStore,
    conversation_id: str,
    principal: Principal,
    question: str,
    pool: ModelPool,
    completions: Completions,
    meter: Meter,
) -> str:
    """Ask the model for a title (metered like any request); the fallback when that fails.

    Only an untitled conversation gets one, so a title the user set meanwhile wins.
    """
    title = ""
    try:
        answer = await ask(
            meter=meter,
            completions=completions,
            principal=principal,
            pool=pool,
            system=_ASK,
            user=question[:2000],
            max_tokens=16,
            conversation_id=conversation_id,
        )
        title = clean_title(answer)
    except (RequestError, ValueError, KeyError, IndexError, TypeError) as exc:
        log.info("title for %s falls back to the question's words: %s", conversation_id, exc)
    title = title or fallback_title(question)
    # Through the loop turn's shared commit: a write lock held elsewhere is waited for on the
    # loop's timers, not in SQLite's busy handler, which would stop every stream meanwhile.
    await store.group_commit.run(
        lambda conn: conn.execute(
            "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
            (title, conversation_id),
        )
    )
    return title
