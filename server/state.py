"""What the gateway holds while it runs, typed, on `app.state.chatapp`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from starlette.requests import Request

from chatapp.accounts import Accounts
from chatapp.completions import Completions
from chatapp.config import Config
from chatapp.conversations import ConversationStore
from chatapp.errors import InvalidRequest, NotFound
from chatapp.generation import GenerationRegistry
from chatapp.ledger import Ledger
from chatapp.metering import Meter
from chatapp.moderation import Moderator
from chatapp.searcher import Searcher
from chatapp.upstreams import ModelPool

__all__ = ["GatewayState", "state_of"]

if TYPE_CHECKING:
    from server.metrics import GatewayMetrics


@dataclass
class GatewayState:
    """The live parts: accounts (SQLite), model pools (engines) and the upstream client."""

    config: Config
    accounts: Accounts
    pools: dict[str, ModelPool]
    client: httpx.AsyncClient
    completions: Completions
    started_at: int
    meter: Meter
    ledger: Ledger
    conversations: ConversationStore
    replies: GenerationRegistry
    moderator: Moderator
    metrics: GatewayMetrics
    searcher: Searcher
    db_path: Path  # the SQLite file, for slow work on a connection of its own (a purge)

    def pool(self, model: object) -> ModelPool:
        """The pool for a model name, or 404 listing what exists."""
        if not isinstance(model, str):
            raise InvalidRequest("model must be a model name (a string).", param="model")
        try:
            return self.pools[model]
        except KeyError:
            known = ", ".join(sorted(self.pools)) or "none"
            raise NotFound(
                f"The model '{model}' does not exist (available: {known}).",
                param="model",
                code="model_not_found",
            ) from None


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.chatapp
    return state
