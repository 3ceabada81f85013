"""Moderation of questions and answers: rules first (microseconds), then a classifier.

A question is checked whole before anything reaches an engine. An answer is checked as it
streams, by an `OutputGuard`: the rules on every piece (over a window that catches a word
split between pieces), the classifier at sentence ends or every `check_every_chars`; a block
stops the answer before the offending piece is shown. Every decision is written to
`moderation_log`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import logging
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import sqlite_utils

from chatapp.accounts import Principal
from chatapp.errors import ConfigError, InvalidRequest
from chatapp.moderation_config import Classifier, ModerationConfig, Policy
from chatapp.store import transaction

__all__ = [
    "Decision",
    "Moderator",
    "OutputGuard",
    "content_blocked",
    "message_texts",
    "normalized",
    "read_log",
]

log = logging.getLogger("chatapp.moderation")

_EXCERPT = 60  # characters either side of a match kept in the log
_PASSED_MEMORY = 50_000  # texts remembered as already passed, per process
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


def message_texts(messages: Any) -> list[str]:
    """The text of every message a request sends (any role, parts joined as an engine joins
    them, tool-call arguments too): a client sends the whole history, so all of it is input."""
    texts = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        if isinstance(content, str) and content:
            texts.append(content)
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                texts.append(function["arguments"])
    return texts


_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def normalized(text: str) -> str:
    """What rules match against: compatibility forms folded (full-width letters, non-breaking
    hyphens) and invisible characters removed, so look-alikes do not slip through."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


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
        self._passed: OrderedDict[tuple[str, bytes], None] = OrderedDict()
        # Called with every decision and its direction once it is recorded (metrics).
        self.observers: list[Callable[[Decision, str], None]] = []
        for policy in config.policies.values():  # a hook that cannot load stops start-up
            if policy.classifier is not None and policy.classifier.hook:
                self._hooks[policy.classifier.hook] = _load_hook(policy.classifier.hook)

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

    def check_rules(
        self, policy: Policy, text: str, direction: str, start: int = 0
    ) -> Decision | None:
        """The first rule that matches from `start` on (a block before a flag), or None.

        `text` is matched as given: callers pass it through `normalized` once.
        """
        found: Decision | None = None
        for rule in policy.rules:
            if not rule.applies(direction):
                continue
            match = rule.pattern.search(text, start)
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
            over = [
                (score, category)
                for category, threshold in classifier.thresholds.items()
                if (score := float(scores.get(category) or 0.0)) >= threshold
            ]
        except Exception as exc:  # noqa: BLE001 - any classifier failure is handled alike
            # A classifier that is down or broken must not take the chat service with it.
            log.warning("moderation classifier failed (%r); text allowed", exc)
            return None
        if not over:
            return None
        score, category = max(over)
        return Decision(classifier.action, category, "classifier", policy.name, score, text[-200:])

    async def check_messages(
        self, policy: Policy, texts: list[str]
    ) -> tuple[Decision | None, list[Decision]]:
        """Check a request's texts (each remembered once it passed, so a long history is not
        checked again every turn); returns the block, if any, and the flags."""
        flags: list[Decision] = []
        for text in texts:
            seen = (policy.name, hashlib.blake2b(text.encode(), digest_size=16).digest())
            if seen in self._passed:
                self._passed.move_to_end(seen)
                continue
            decision = await self.check(policy, text, "input")
            if decision is not None and decision.blocks:
                return decision, flags
            if decision is not None:
                flags.append(decision)
            self._passed[seen] = None
            if len(self._passed) > _PASSED_MEMORY:
                self._passed.popitem(last=False)
        return None, flags

    async def check(self, policy: Policy, text: str, direction: str) -> Decision | None:
        """Rules, then (unless a rule blocks) the classifier; the stronger verdict wins."""
        ruled = self.check_rules(policy, normalized(text), direction)
        if ruled is not None and ruled.blocks:
            return ruled
        classified = await self.check_classifier(policy, text)
        if classified is not None and (ruled is None or classified.blocks):
            return classified
        return ruled

    async def _scores(self, classifier: Classifier, text: str) -> Mapping[str, Any]:
        if classifier.hook:
            hook = self._hooks[classifier.hook]
            if inspect.iscoroutinefunction(hook):
                result = await hook(text)
            else:  # a plain function may be slow: never on the event loop
                result = await asyncio.to_thread(hook, text)
            if not isinstance(result, Mapping):
                raise TypeError(f"the hook returned {type(result).__name__}, not scores")
            return result
        assert classifier.url is not None
        headers = {"Authorization": f"Bearer {classifier.api_key}"} if classifier.api_key else {}
        body: dict[str, Any] = {"input": text}
        if classifier.model:
            body["model"] = classifier.model
        response = await self.client.post(classifier.url, json=body, headers=headers)
        response.raise_for_status()
        scores = response.json()["results"][0]["category_scores"]
        if not isinstance(scores, Mapping):
            raise TypeError("category_scores is not an object")
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
        with transaction(self.db):
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
        for observe in self.observers:
            observe(decision, direction)


def _load_hook(hook: str) -> Callable[[str], Any]:
    module, _, name = hook.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError("models.toml", "moderation classifier hook", f"{hook}: {exc}") from None
    if not callable(function):
        raise ConfigError("models.toml", "moderation classifier hook", f"{hook} is not callable")
    return function  # type: ignore[no-any-return]


class OutputGuard:
    """Checks an answer as it streams; `admit(piece)` says whether the piece may be shown."""

    @classmethod
    def for_request(
        cls,
        moderator: Moderator,
        policy: Policy,
        *,
        principal: Principal,
        model: str,
        request_id: str,
        conversation_id: str | None = None,
    ) -> OutputGuard:
        """A guard that records its decisions against this request."""

        def record(decision: Decision) -> None:
            moderator.record(
                decision,
                direction="output",
                principal=principal,
                model=model,
                conversation_id=conversation_id,
                request_id=request_id,
            )

        return cls(moderator, policy, record)

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
        # The last 200 characters and the new piece (a word split across pieces is whole
        # here), searched from after one character of context so a word boundary before the
        # window is seen as it is; normalized like questions are.
        context = 1 if window_start else 0
        window = normalized(self.text[window_start - context :])
        decision = self.moderator.check_rules(self.policy, window, "output", context)
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
