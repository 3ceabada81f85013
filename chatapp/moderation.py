"""Moderation of questions and answers: rules first (microseconds), then a classifier.

A question is checked whole before anything reaches an engine. An answer is checked as it
streams, by an `OutputGuard`: the rules on every piece (over a window that catches a word
split between pieces), the classifier at sentence ends or every `check_every_chars`; a block
stops the answer before the offending piece is shown. Every decision is written to
`moderation_log`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import sqlite_utils

from chatapp.accounts import Principal
from chatapp.errors import InvalidRequest
from chatapp.moderation_config import Classifier, ModerationConfig, Policy

__all__ = [
    "Decision",
    "Moderator",
    "OutputGuard",
    "content_blocked",
    "question_text",
    "read_log",
]

log = logging.getLogger("chatapp.moderation")

_EXCERPT = 60  # characters either side of a match kept in the log
_SENTENCE_END = re.compile(r"[.!?\n]\s*$")


@dataclass(frozen=True)
class Decision:
    """What one check found: `action` is block or flag (a pass is no Decision)."""

    action: str
    category: str
    source: str
    policy: str
    score: float | None = None
    excerpt: str = ""

    @property
    def blocks(self) -> bool:
        return self.action == "block"


def content_blocked(decision: Decision) -> InvalidRequest:
    """The 400 a blocked question gets, in OpenAI's shape."""
    return InvalidRequest(
        f"The request was blocked by the content policy (category: {decision.category}).",
        param="messages",
        code="content_policy_violation",
    )


def question_text(messages: Any) -> str:
    """The newest user message's text (what a request adds; earlier turns were checked)."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    part.get("text", "")
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
    return ""


def _excerpt(text: str, match: re.Match[str] | None) -> str:
    if match is None:
        return text[: _EXCERPT * 2]
    start, end = max(0, match.start() - _EXCERPT), match.end() + _EXCERPT
    return text[start:end]


class Moderator:
    """Applies the policy of a caller's org or tier, and records each decision."""

    def __init__(
        self, config: ModerationConfig, db: sqlite_utils.Database, client: httpx.AsyncClient
    ) -> None:
        self.config = config
        self.db = db
        self.client = client
        self._hooks: dict[str, Callable[[str], Any]] = {}
        self._org_names: dict[int, str] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.config.policies)

    def policy_for(self, principal: Principal) -> Policy | None:
        if not self.enabled:
            return None
        name = self._org_names.get(principal.org_id)
        if name is None:
            row = self.db.execute("SELECT name FROM orgs WHERE id = ?", (principal.org_id,))
            name = self._org_names[principal.org_id] = (row.fetchone() or [""])[0]
        return self.config.policy_for(name, principal.user_tier or principal.org_tier)

    def check_rules(self, policy: Policy, text: str, direction: str) -> Decision | None:
        """The first rule that matches (a block before a flag), or None."""
        found: Decision | None = None
        for rule in policy.rules:
            if not rule.applies(direction):
                continue
            match = rule.pattern.search(text)
            if match is None:
                continue
            decision = Decision(
                rule.action, rule.category, "rule", policy.name, None, _excerpt(text, match)
            )
            if decision.blocks:
                return decision
            found = found or decision
        return found

    async def check_classifier(self, policy: Policy, text: str) -> Decision | None:
        """The classifier's verdict: the highest-scoring category over its threshold."""
        classifier = policy.classifier
        if classifier is None or not text.strip():
            return None
        try:
            scores = await asyncio.wait_for(
                self._scores(classifier, text), classifier.timeout_seconds
            )
        except (TimeoutError, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            # A classifier that is down must not take the chat service with it: let it pass.
            log.warning("moderation classifier failed (%s); text allowed", type(exc).__name__)
            return None
        over = [
            (score, category)
            for category, threshold in classifier.thresholds.items()
            if (score := float(scores.get(category, 0.0))) >= threshold
        ]
        if not over:
            return None
        score, category = max(over)
        return Decision(classifier.action, category, "classifier", policy.name, score, text[-200:])

    async def check(self, policy: Policy, text: str, direction: str) -> Decision | None:
        """Rules, then (unless a rule blocks) the classifier; the stronger verdict wins."""
        ruled = self.check_rules(policy, text, direction)
        if ruled is not None and ruled.blocks:
            return ruled
        classified = await self.check_classifier(policy, text)
        if classified is not None and (ruled is None or classified.blocks):
            return classified
        return ruled

    async def _scores(self, classifier: Classifier, text: str) -> Mapping[str, Any]:
        if classifier.hook:
            hook = self._hooks.get(classifier.hook)
            if hook is None:
                module, _, name = classifier.hook.partition(":")
                hook = self._hooks[classifier.hook] = getattr(importlib.import_module(module), name)
            result = hook(text)
            return await result if inspect.isawaitable(result) else result
        assert classifier.url is not None
        headers = {"Authorization": f"Bearer {classifier.api_key}"} if classifier.api_key else {}
        body: dict[str, Any] = {"input": text}
        if classifier.model:
            body["model"] = classifier.model
        response = await self.client.post(classifier.url, json=body, headers=headers)
        response.raise_for_status()
        scores: Mapping[str, Any] = response.json()["results"][0]["category_scores"]
        return scores

    def record(
        self,
        decision: Decision,
        *,
        direction: str,
        principal: Principal,
        model: str | None,
        conversation_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO moderation_log (direction, action, category, score, source, policy,"
                " excerpt, key_id, user_id, org_id, model, conversation_id, request_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    direction,
                    decision.action,
                    decision.category,
                    decision.score,
                    decision.source,
                    decision.policy,
                    decision.excerpt[:400],
                    principal.key_id or None,
                    principal.user_id,
                    principal.org_id,
                    model,
                    conversation_id,
                    request_id,
                ),
            )


class OutputGuard:
    """Checks an answer as it streams; `admit(piece)` says whether the piece may be shown."""

    def __init__(self, moderator: Moderator, policy: Policy, record: Callable[[Decision], None]):
        self.moderator = moderator
        self.policy = policy
        self.record = record
        self.text = ""
        self.checked_upto = 0  # where the classifier last looked
        self.flagged: set[str] = set()
        self.blocked: Decision | None = None
        self.shown = ""  # what the client saw: the text before a blocked piece

    async def admit(self, piece: str) -> bool:
        """False once the answer (with this piece) is blocked; the piece is then not shown."""
        if self.blocked is not None:
            return False
        window_start = max(0, len(self.text) - 200)
        self.text += piece
        decision = self.moderator.check_rules(self.policy, self.text[window_start:], "output")
        due = len(self.text) - self.checked_upto >= self.moderator.config.check_every_chars
        if (decision is None or not decision.blocks) and (due or _SENTENCE_END.search(piece)):
            self.checked_upto = len(self.text)
            classified = await self.moderator.check_classifier(self.policy, self.text)
            if classified is not None and (decision is None or classified.blocks):
                decision = classified
        allowed = self._decide(decision)
        if allowed:
            self.shown = self.text
        return allowed

    async def finish(self) -> bool:
        """The last look at the whole answer (text since the last classifier check)."""
        if self.blocked is not None or self.checked_upto == len(self.text):
            return self.blocked is None
        self.checked_upto = len(self.text)
        return self._decide(await self.moderator.check_classifier(self.policy, self.text))

    def _decide(self, decision: Decision | None) -> bool:
        if decision is None:
            return True
        if decision.blocks:
            self.blocked = decision
            self.record(decision)
            return False
        if decision.category not in self.flagged:  # one flag per category per answer
            self.flagged.add(decision.category)
            self.record(decision)
        return True


_LOG_COLUMNS = (
    "id",
    "ts",
    "direction",
    "action",
    "category",
    "score",
    "source",
    "policy",
    "excerpt",
    "key_id",
    "user_id",
    "org_id",
    "model",
    "conversation_id",
    "request_id",
)


def read_log(
    db: sqlite_utils.Database,
    *,
    since: str | None = None,
    action: str | None = None,
    user_id: int | None = None,
    category: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Decisions newest first, with the user's name, filtered as asked."""
    where: list[str] = ["1 = 1"]
    params: list[object] = []
    for clause, value in (
        ("m.ts >= ?", since),
        ("m.action = ?", action),
        ("m.user_id = ?", user_id),
        ("m.category = ?", category),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    columns = ", ".join(f"m.{c}" for c in _LOG_COLUMNS)
    rows = db.execute(
        f"SELECT {columns}, u.name FROM moderation_log m LEFT JOIN users u ON u.id = m.user_id"
        f" WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT ?",
        (*params, limit),
    )
    return [{**dict(zip(_LOG_COLUMNS, row[:-1], strict=True)), "user": row[-1]} for row in rows]
