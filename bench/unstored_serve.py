"""`chatapp serve` whose conversations store no messages: chats with persistence off.

The gateway benchmark's persistence row for chats compares turns through the conversations
API with their questions and replies stored in SQLite (and the usage ledger on) against the
same turns storing nothing: the same routes, reply tasks and events on both sides, so the
ratio is what storing costs. Against the plain API it would also count what the conversations
API itself does for a turn (resumable replies, their events), which has a row of its own.

chatapp has no such switch (a conversation that keeps nothing is not one), so here a turn's
two writes, its question with the empty reply and the reply's end, write nothing. Its
conversation then never has a current message, and each turn's prompt is its question alone;
how long a prompt the gateway sends does not move the figure (side by side, the API with each
user's history sent along read 1.002x of the API without). Run it with `record_usage = false`
for the ledger off too.
"""

from __future__ import annotations

from typing import Any

from chatapp.conversations import ConversationStore
from cli.main import app

__all__ = ["main"]


def _write_nothing(*args: Any, **kwargs: Any) -> None:
    """A turn's write, left out."""


def main() -> None:
    """The chatapp command line (`serve ...`), with a turn's writes left out."""
    ConversationStore.add_turn = _write_nothing  # type: ignore[method-assign]
    ConversationStore.finish_message = _write_nothing  # type: ignore[method-assign]
    app()


if __name__ == "__main__":
    main()
