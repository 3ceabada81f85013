"""Moderation policies: rules, classifier thresholds, who gets which, and the streaming guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from chatapp.accounts import Principal
from chatapp.config import parse_config
from chatapp.errors import ConfigError
from chatapp.moderation import Decision, Moderator, OutputGuard
from chatapp.moderation_config import ModerationConfig
from chatapp.store import open_database

MODELS = {"m": {"nodes": [{"url": "http://127.0.0.1:1/v1"}]}}
TIERS = {"free": {}, "pro": {}}


def fake_scores(text: str) -> dict[str, float]:
    """A local classifier hook: "violent" scores high for violence."""
    return {"violence": 0.97 if "violent" in text else 0.02, "hate": 0.5}


def _moderation(extra: dict[str, Any] | None = None) -> ModerationConfig:
    raw = {
        "models": MODELS,
        "tiers": TIERS,
        "moderation": {
            "policy": "base",
            "tiers": {"pro": "none"},
            "orgs": {"labs": "strict"},
            "check_every_chars": 10,
            "policies": {
                "base": {
                    "rules": [
                        {"category": "pii", "keywords": ["social security"], "action": "flag"},
                        {"category": "keys", "patterns": [r"sk-[a-z0-9]{8}"]},
                    ]
                },
                "strict": {
                    "rules": [{"category": "spoiler", "keywords": ["rosebud"]}],
                    "classifier": {
                        "hook": "tests.chatapp.test_moderation:fake_scores",
                        "thresholds": {"violence": 0.9, "hate": 0.6},
                    },
                },
            },
            **(extra or {}),
        },
    }
    return parse_config(raw, Path("models.toml")).moderation


def _moderator(tmp_path: Path, config: ModerationConfig) -> Moderator:
    return Moderator(config, open_database(tmp_path / "chatapp.db"), httpx.AsyncClient())


def _principal(tier: str | None = "free") -> Principal:
    return Principal(1, "ca-x", 1, "ann", 1, frozenset({"chat"}), org_tier=tier)


def test_policies_go_by_org_then_tier_then_default() -> None:
    config = _moderation()
    assert config.policy_for("labs", "pro").name == "strict"  # type: ignore[union-attr]
    assert config.policy_for("acme", "pro") is None  # "none"
    assert config.policy_for("acme", "free").name == "base"  # type: ignore[union-attr]


def test_rules_match_whole_words_in_any_case(tmp_path: Path) -> None:
    config = _moderation()
    moderator = _moderator(tmp_path, config)
    base = config.policies["base"]
    assert moderator.check_rules(base, "my Social Security number", "input") == Decision(
        "flag", "pii", "rule", "base", None, "my Social Security number"
    )
    assert moderator.check_rules(base, "antisocial security", "input") is None
    blocked = moderator.check_rules(base, "use sk-abcd1234 now, and social security", "output")
    assert blocked is not None and blocked.blocks and blocked.category == "keys"


async def test_classifier_thresholds_pick_the_strongest_category(tmp_path: Path) -> None:
    config = _moderation()
    moderator = _moderator(tmp_path, config)
    strict = config.policies["strict"]
    decision = await moderator.check(strict, "a violent story", "input")
    assert decision is not None and (decision.category, decision.score) == ("violence", 0.97)
    assert await moderator.check(strict, "a calm story", "input") is None  # hate 0.5 < 0.6


async def test_a_classifier_that_is_down_lets_text_through(tmp_path: Path) -> None:
    raw = {
        "models": MODELS,
        "moderation": {
            "policy": "remote",
            "policies": {
                "remote": {
                    "classifier": {
                        "url": "http://classifier/v1/moderations",
                        "thresholds": {"hate": 0.5},
                    }
                }
            },
        },
    }
    config = parse_config(raw, Path("models.toml")).moderation

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(broken))
    moderator = Moderator(config, open_database(tmp_path / "chatapp.db"), client)
    assert await moderator.check(config.policies["remote"], "anything", "input") is None
    await client.aclose()


async def test_the_guard_catches_a_word_split_across_pieces_and_hides_that_piece(
    tmp_path: Path,
) -> None:
    config = _moderation()
    recorded: list[Decision] = []
    guard = OutputGuard(_moderator(tmp_path, config), config.policies["strict"], recorded.append)
    assert await guard.admit("The sled was ")
    assert await guard.admit("rose")
    assert not await guard.admit("bud, of course.")
    assert not await guard.admit(" more")  # once blocked, nothing else goes out
    assert guard.shown == "The sled was rose"
    assert [d.category for d in recorded] == ["spoiler"]


async def test_the_guard_asks_the_classifier_at_sentence_ends(tmp_path: Path) -> None:
    config = _moderation()
    recorded: list[Decision] = []
    guard = OutputGuard(_moderator(tmp_path, config), config.policies["strict"], recorded.append)
    assert await guard.admit("It was")
    assert not await guard.admit(" violent.")
    assert recorded[0].source == "classifier" and recorded[0].category == "violence"


@pytest.mark.parametrize(
    ("moderation", "key"),
    [
        ({"policy": "nope"}, "moderation.policy"),
        ({"tiers": {"free": "nope"}}, "moderation.tiers.free"),
        ({"policies": {"p": {"rules": [{"category": "x", "patterns": ["("]}]}}}, "patterns[0]"),
        ({"policies": {"p": {"rules": [{"category": "x"}]}}}, "keywords"),
        (
            {"policies": {"p": {"rules": [{"category": "x", "keywords": ["a"], "action": "ban"}]}}},
            "action",
        ),
        ({"policies": {"p": {"classifier": {"thresholds": {"hate": 0.5}}}}}, "url"),
        (
            {"policies": {"p": {"classifier": {"url": "http://x", "thresholds": {"hate": 2}}}}},
            "thresholds.hate",
        ),
    ],
)
def test_bad_moderation_config_names_the_key(moderation: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"models": MODELS, "tiers": TIERS, "moderation": moderation}, Path("m.toml"))
    assert info.value.key is not None and info.value.key.endswith(key)


def broken_hook(text: str) -> Any:
    raise RuntimeError("the model server fell over")


def garbage_hook(text: str) -> Any:
    return ["not", "scores"]


@pytest.mark.parametrize("hook", ["broken_hook", "garbage_hook"])
async def test_a_broken_hook_lets_text_through(tmp_path: Path, hook: str) -> None:
    raw = {
        "models": MODELS,
        "moderation": {
            "policy": "p",
            "policies": {
                "p": {
                    "classifier": {
                        "hook": f"tests.chatapp.test_moderation:{hook}",
                        "thresholds": {"hate": 0.5},
                    }
                }
            },
        },
    }
    config = parse_config(raw, Path("m.toml")).moderation
    moderator = _moderator(tmp_path, config)
    assert await moderator.check(config.policies["p"], "anything", "input") is None


def test_a_hook_that_cannot_be_imported_stops_start_up(tmp_path: Path) -> None:
    raw = {
        "models": MODELS,
        "moderation": {
            "policy": "p",
            "policies": {"p": {"classifier": {"hook": "nosuch:fn", "thresholds": {"hate": 0.5}}}},
        },
    }
    with pytest.raises(ConfigError, match="nosuch:fn"):
        _moderator(tmp_path, parse_config(raw, Path("m.toml")).moderation)


async def test_look_alike_characters_do_not_slip_past_rules(tmp_path: Path) -> None:
    config = _moderation()
    moderator = _moderator(tmp_path, config)
    strict = config.policies["strict"]
    for text in ("ｒｏｓｅｂｕｄ", "rose\u200bbud", "ROSEBUD"):
        decision = await moderator.check(strict, text, "output")
        assert decision is not None and decision.category == "spoiler", text


async def test_the_window_does_not_invent_word_boundaries(tmp_path: Path) -> None:
    raw = {
        "models": MODELS,
        "moderation": {
            "policy": "p",
            "policies": {"p": {"rules": [{"category": "pets", "keywords": ["cat"]}]}},
        },
    }
    config = parse_config(raw, Path("m.toml")).moderation
    guard = OutputGuard(_moderator(tmp_path, config), config.policies["p"], lambda d: None)
    assert await guard.admit("x" * 10 + "con")
    assert await guard.admit("cat " + "y" * 196)
    assert await guard.admit("z")  # "concat" is not the word "cat"


async def test_every_message_of_a_request_is_checked_once(tmp_path: Path) -> None:
    config = _moderation()
    moderator = _moderator(tmp_path, config)
    strict = config.policies["strict"]
    blocked, _ = await moderator.check_messages(strict, ["fine", "the sled is rosebud", "go on"])
    assert blocked is not None and blocked.category == "spoiler"
    calls: list[str] = []
    original = moderator.check

    async def counting(policy: Any, text: str, direction: str) -> Any:
        calls.append(text)
        return await original(policy, text, direction)

    moderator.check = counting  # type: ignore[method-assign]
    await moderator.check_messages(strict, ["hello", "there"])
    await moderator.check_messages(strict, ["hello", "there", "again"])
    assert calls == ["hello", "there", "again"]


@pytest.mark.parametrize(
    "moderation",
    [
        {"policies": {"none": {"rules": [{"category": "x", "keywords": ["a"]}]}}},
        {"policies": {"p": {"rules": [{"category": "x", "patterns": ["a", "(?i)b"]}]}}},
    ],
)
def test_policies_that_cannot_work_are_config_errors(moderation: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        parse_config({"models": MODELS, "moderation": moderation}, Path("m.toml"))
