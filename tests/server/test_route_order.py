"""The busiest routes are tried first, and moving them there changed no request's route."""

from __future__ import annotations

import pytest
from starlette.routing import Match, Route

from server.app import routes


def _routed(method: str, path: str) -> tuple[int, Route]:
    """The position and route Starlette picks: the first full match, as its Router does."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for position, route in enumerate(routes):
        assert isinstance(route, Route)
        if route.matches(scope)[0] == Match.FULL:
            return position, route
    raise AssertionError(f"{method} {path}: no route")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/conversations/conv_1/messages"),
        ("GET", "/v1/conversations/conv_1/messages/msg_1/events"),
        ("POST", "/v1/conversations/conv_1/messages/msg_1/regenerate"),
    ],
)
def test_a_streaming_route_is_among_the_first_tried(method: str, path: str) -> None:
    position, _ = _routed(method, path)
    assert position < 4


@pytest.mark.parametrize(
    ("method", "path", "pattern", "endpoint"),
    [
        (
            "GET",
            "/v1/conversations/conv_1/messages",
            "/v1/conversations/{cid}/messages",
            "list_messages",
        ),
        (
            "GET",
            "/v1/conversations/conv_1/messages/msg_1",
            "/v1/conversations/{cid}/messages/{mid}",
            "get_message",
        ),
        (
            "POST",
            "/v1/conversations/conv_1/messages/msg_1/cancel",
            "/v1/conversations/{cid}/messages/{mid}/cancel",
            "cancel_reply",
        ),
        ("POST", "/v1/conversations/import", "/v1/conversations/import", "import_conversation"),
        ("GET", "/v1/conversations/conv_1", "/v1/conversations/{cid}", "conversation"),
    ],
)
def test_the_neighbours_of_a_moved_route_still_get_their_requests(
    method: str, path: str, pattern: str, endpoint: str
) -> None:
    """A GET of a send's path matches the send's route only partly (its method), so Starlette
    goes on to the listing, as it did when the listing came first."""
    _, route = _routed(method, path)
    assert route.path == pattern and route.name == endpoint
