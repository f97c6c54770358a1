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
