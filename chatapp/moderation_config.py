"""The [moderation] table of models.toml: policies of rules and a classifier, and who gets which.

[moderation]
policy = "standard"                 # the default policy; "none" (the default) checks nothing
check_every_chars = 200             # output is checked at each sentence end or this often
tiers = { free = "strict" }         # a tier's policy
orgs = { research = "none" }        # an org's policy (wins over its tier)

[[moderation.policies.standard.rules]]
category = "credentials"
action = "block"                    # or "flag": recorded, not stopped
keywords = ["BEGIN RSA PRIVATE KEY"] # whole words/phrases, any case
patterns = ['\\bAKIA[0-9A-Z]{16}\\b']   # regular expressions
applies_to = "both"                 # "input", "output" or "both"

[moderation.policies.standard.classifier]
url = "http://10.0.0.5:8000/v1/moderations"   # any OpenAI-compatible moderation endpoint
# hook = "mypackage.module:function"          # or a local callable: text -> {category: score}
thresholds = { hate = 0.8, violence = 0.9 }
action = "block"
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from chatapp.toml_table import Table

__all__ = [
    "ACTIONS",
    "NO_POLICY",
    "Classifier",
    "ModerationConfig",
    "Policy",
    "Rule",
    "parse_moderation",
]

ACTIONS = ("block", "flag")
DIRECTIONS = ("input", "output", "both")
NO_POLICY = "none"


@dataclass(frozen=True)
class Rule:
    category: str
    action: str
    pattern: re.Pattern[str]  # the keywords and patterns, as one alternation
    applies_to: str = "both"

    def applies(self, direction: str) -> bool:
        return self.applies_to in ("both", direction)


@dataclass(frozen=True)
class Classifier:
    url: str | None
    hook: str | None
    api_key: str | None
    model: str | None
    thresholds: Mapping[str, float]
    action: str = "block"
    timeout_seconds: float = 3.0


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...] = ()
    classifier: Classifier | None = None


@dataclass(frozen=True)
class ModerationConfig:
    policy: str = NO_POLICY
    check_every_chars: int = 200
    tiers: Mapping[str, str] = field(default_factory=dict)
    orgs: Mapping[str, str] = field(default_factory=dict)
    policies: Mapping[str, Policy] = field(default_factory=dict)

    def policy_for(self, org_name: str | None, tier: str | None) -> Policy | None:
        """The org's policy, else its tier's, else the default; None when it is "none"."""
        name = self.orgs.get(org_name or "") or self.tiers.get(tier or "") or self.policy
        return self.policies.get(name)


def parse_moderation(t: Table) -> ModerationConfig:
    t.only("policy", "check_every_chars", "tiers", "orgs", "policies")
    policies_table = t.table("policies")
    if NO_POLICY in policies_table.keys():
        policies_table.fail(NO_POLICY, f'"{NO_POLICY}" means no moderation: pick another name')
    policies = {
        name: _parse_policy(policies_table.table(name), name) for name in policies_table.keys()
    }
    known = {*policies, NO_POLICY}
    default = t.string("policy", NO_POLICY) or NO_POLICY
    if default not in known:
        t.fail("policy", f"names no policy (defined: {', '.join(sorted(known))})")
    assigned: dict[str, dict[str, str]] = {}
    for group in ("tiers", "orgs"):
        table = t.table(group)
        assigned[group] = {}
        for name in table.keys():
            policy = table.string(name, None)
            if policy not in known:
                table.fail(name, f"names no policy (defined: {', '.join(sorted(known))})")
            assigned[group][name] = policy or NO_POLICY
    return ModerationConfig(
        policy=default,
        check_every_chars=t.integer("check_every_chars", 200, low=1),
        tiers=assigned["tiers"],
        orgs=assigned["orgs"],
        policies=policies,
    )


def _parse_policy(t: Table, name: str) -> Policy:
    t.only("rules", "classifier")
    rules = tuple(_parse_rule(rule) for rule in t.tables("rules"))
    classifier = _parse_classifier(t.table("classifier")) if "classifier" in t.raw else None
    return Policy(name=name, rules=rules, classifier=classifier)


def _parse_rule(t: Table) -> Rule:
    t.only("category", "action", "keywords", "patterns", "applies_to")
    category = t.string("category", None)
    if not category:
        t.fail("category", 'missing: name what the rule catches, e.g. category = "pii"')
    action = t.string("action", "block")
    if action not in ACTIONS:
        t.fail("action", f"must be one of {', '.join(ACTIONS)}")
    applies_to = t.string("applies_to", "both")
    if applies_to not in DIRECTIONS:
        t.fail("applies_to", f"must be one of {', '.join(DIRECTIONS)}")
    parts = [rf"(?<!\w){re.escape(word)}(?!\w)" for word in _strings(t, "keywords")]
    for i, pattern in enumerate(_strings(t, "patterns")):
        try:
            re.compile(pattern)
        except re.error as exc:
            t.fail(f"patterns[{i}]", f"not a regular expression: {exc}")
        parts.append(f"(?:{pattern})")
    if not parts:
        t.fail("keywords", "a rule needs keywords or patterns")
    try:
        combined = re.compile("|".join(parts), re.IGNORECASE)
    except re.error as exc:
        t.fail("patterns", f"cannot be combined (no inline flags or repeated group names): {exc}")
    return Rule(
        category=category,
        action=action or "block",
        pattern=combined,
        applies_to=applies_to or "both",
    )


def _strings(t: Table, name: str) -> list[str]:
    value = t.raw.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        t.fail(name, "must be a list of non-empty strings")
    return list(value)


def _parse_classifier(t: Table) -> Classifier:
    t.only("url", "hook", "api_key", "model", "thresholds", "action", "timeout_seconds")
    url, hook = t.string("url", None), t.string("hook", None)
    if bool(url) == bool(hook):
        t.fail("url", "give either url (a /v1/moderations endpoint) or hook (module:function)")
    if hook and ":" not in hook:
        t.fail("hook", "must be module.path:function")
    thresholds_table = t.table("thresholds")
    thresholds = {}
    for category in thresholds_table.keys():
        value = thresholds_table.number(category, 1.0, low=0.0)
        if value > 1.0:
            thresholds_table.fail(category, "a score threshold is between 0 and 1")
        thresholds[category] = value
    if not thresholds:
        t.fail("thresholds", "name the categories to act on, e.g. { hate = 0.8 }")
    action = t.string("action", "block")
    if action not in ACTIONS:
        t.fail("action", f"must be one of {', '.join(ACTIONS)}")
    return Classifier(
        url=url,
        hook=hook,
        api_key=t.string("api_key", None),
        model=t.string("model", None),
        thresholds=thresholds,
        action=action or "block",
        timeout_seconds=t.number("timeout_seconds", 3.0, low=0.05),
    )
