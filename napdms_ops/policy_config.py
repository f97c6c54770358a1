"""`napdms-ops policy-config`: the stack's policy config, its exemption grants taken from the
catalog.

`policies/config/<stack>.json` is what `pulumi preview --policy-pack-config` and `napdms-ops
audit` read. Its levels are chosen by hand; its grants (which container may be exempt from which
rule, and why) are generated here from the stack's resolved catalog (`Stack.grants`), so the
catalog and the file cannot disagree: a test compares them, and `--write` brings the file up to
date after a catalog change.
"""

from __future__ import annotations

import json
from pathlib import Path

from components.settings import read_stack
from policies.rules import RULES, levels
from policies.rules.grants import GRANTS_SETTING


class PolicyConfigError(ValueError):
    """The stack or its config file cannot be used; the message says why and what to do."""


def path_of(stack: str) -> Path:
    """Where the stack's policy config lives."""
    return levels.CONFIG_DIR / f"{stack}.json"


def generated(stack: str) -> str:
    """The file's text as it must be: its levels and settings kept, every rule named, the grants
    the catalog gives the stack. Raises `SettingsError` for a stack file that would not deploy
    and `PolicyConfigError` for a config file that is not a JSON object."""
    path = path_of(stack)
    try:
        current = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PolicyConfigError(
            f"{stack}: {path}: cannot be read ({error}); fix or remove it"
        ) from None
    if not isinstance(current, dict):
        raise PolicyConfigError(f"{stack}: {path}: not a JSON object; fix or remove it")
    document = levels.with_grants(current, [rule.id for rule in RULES], read_stack(stack).grants)
    text = json.dumps(document, indent=2) + "\n"
    levels.parse(stack, json.loads(text), str(path))
    return text


def _entries(text: str | None) -> dict[str, tuple[str, dict[str, str]]]:
    """Each policy of a config file's text: its level and the exemptions it grants."""
    try:
        document = json.loads(text) if text else {}
    except json.JSONDecodeError:
        document = {}
    entries = {}
    for name, value in (document if isinstance(document, dict) else {}).items():
        entry = value if isinstance(value, dict) else {"enforcementLevel": value}
        entries[name] = (str(entry.get("enforcementLevel")), dict(entry.get(GRANTS_SETTING) or {}))
    return entries


def changes(before: str | None, after: str) -> dict[str, list[str]]:
    """What rewriting a config file from `before` to `after` changes, for the audit trail:
    exemptions granted and revoked (`<container>: <rule>`), levels changed (`<rule>: a -> b`)."""
    old, new = _entries(before), _entries(after)
    granted, revoked, relevelled = [], [], []
    for name in sorted(old.keys() | new.keys()):
        level_before, grants_before = old.get(name, ("none", {}))
        level_after, grants_after = new.get(name, ("none", {}))
        if level_before != level_after:
            relevelled.append(f"{name}: {level_before} -> {level_after}")
        granted += [f"{c}: {name}" for c in sorted(grants_after.keys() - grants_before.keys())]
        revoked += [f"{c}: {name}" for c in sorted(grants_before.keys() - grants_after.keys())]
    return {"granted": granted, "revoked": revoked, "levels": relevelled}
