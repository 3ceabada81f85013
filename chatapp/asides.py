"""One-off requests the gateway makes to a model on a user's behalf (titles, summaries),
non-streamed and metered like any request the user makes."""

from __future__ import annotations

import json

from chatapp.accounts import Principal
from chatapp.completions import Completions
from chatapp.errors import RequestError
from chatapp.metering import Meter
from chatapp.upstreams import ModelPool

__all__ = ["ask"]


async def ask(
    *,
    meter: Meter,
    completions: Completions,
    principal: Principal,
    pool: ModelPool,
    system: str,
    user: str,
    max_tokens: int,
    conversation_id: str,
) -> str:
    """The model's answer to one instruction and one message.

    Raises RequestError (refused or failed) or ValueError/KeyError/IndexError/TypeError (an
    answer of the wrong shape); callers fall back to something of their own.
    """
    body = {
        "model": pool.model.name,
        "max_tokens": max_tokens,
        "temperature": 0.2,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
    }
    ticket = meter.admit(principal, pool.model, body)
    try:
        completion = await completions.create(pool, body)
    except RequestError:
        meter.finish(ticket, status="error", usage=None, upstream=None)
        raise
    meter.finish(
        ticket,
        status="ok",
        usage=completion.usage,
        upstream=completion.upstream.name,
        conversation_id=conversation_id,
    )
    return str(json.loads(completion.content)["choices"][0]["message"]["content"] or "")
