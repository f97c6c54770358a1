"""Per-stack enforcement: `policies/config/<stack>.json`, the file `pulumi preview
--policy-pack-config` takes, read the same way by the runtime audit.

Format (Pulumi's): `{"<policy>": "advisory" | "mandatory" | "disabled"}` or
`{"<policy>": {"enforcementLevel": "...", "<setting>": value}}`; the key `all` sets every policy.
A policy the file does not name is mandatory.

Exemption grants sit in the same file (see `grants.py`): each rule's `exempt` setting, and the
whole table in the `granted` setting of `unauthorised-exemption` and of the `exemptions` report.
`napdms-ops policy-config` writes them from the catalog; `parse` refuses a file whose copies
disagree, or that grants a rule no stack but dev may waive.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .grants import GRANTS_SETTING, SELF_GRANT_RULE, TABLE_SETTING, granted_for, waivable
from .names import object_prefix
from .rule import LEVELS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULT_LEVEL = "mandatory"
EXEMPTIONS_POLICY = "exemptions"
"""The pack's advisory policy that reports every exempted finding with its reason."""


class LevelsError(ValueError):
    """A policy config file that cannot be used; the message names the file, key and fix."""


@dataclass(frozen=True)
class StackLevels:
    """Enforcement level and settings of every rule for one stack."""

    stack: str
    levels: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default: str = DEFAULT_LEVEL

    def level(self, rule_id: str) -> str:
        """`advisory`, `mandatory` or `disabled`."""
        return self.levels.get(rule_id, self.default)

    def config(self, rule_id: str) -> Mapping[str, Any]:
        """The rule's settings from the file (without the level)."""
        return self.settings.get(rule_id, {})

    @property
    def grants(self) -> dict[str, dict[str, str]]:
        """Every exemption the stack grants: container -> rule id -> reason."""
        return {
            key: dict(rules)
            for key, rules in (self.config(SELF_GRANT_RULE).get(TABLE_SETTING) or {}).items()
        }


def load(stack: str, config_dir: Path = CONFIG_DIR) -> StackLevels:
    """Read `<config_dir>/<stack>.json`."""
    path = config_dir / f"{stack}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.json"))) or "none"
        raise LevelsError(f"{stack}: {path} does not exist; policy configs exist for: {known}")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LevelsError(f"{stack}: {path}: not JSON ({error}); fix the syntax") from None
    return parse(stack, document, str(path))


def parse(stack: str, document: Any, source: str = "policy config") -> StackLevels:
    """Validate a config document (see module docstring)."""
    if not isinstance(document, dict):
        raise LevelsError(
            f"{stack}: {source}: expected an object of policy names, got {type(document).__name__}"
        )
    levels: dict[str, str] = {}
    settings: dict[str, dict[str, Any]] = {}
    default = DEFAULT_LEVEL
    for name, value in document.items():
        if isinstance(value, str):
            level, extra = value, {}
        elif isinstance(value, dict):
            extra = {k: v for k, v in value.items() if k != "enforcementLevel"}
            level = value.get("enforcementLevel", DEFAULT_LEVEL)
        else:
            raise LevelsError(
                f"{stack}: {source}: {name}: expected a level or an object, got {value!r}"
            )
        if level not in LEVELS:
            raise LevelsError(
                f"{stack}: {source}: {name}: level {level!r} is unknown; "
                f"use one of {', '.join(LEVELS)}"
            )
        if name == "all":
            default = level
        else:
            levels[name] = level
            settings[name] = extra
    _check_grants(stack, source, settings)
    return StackLevels(stack, levels, settings, default)


def with_grants(
    document: Mapping[str, Any], rule_ids: list[str], grants: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """`document` (a config file's content) naming every rule in `rule_ids` (mandatory unless
    it already says otherwise) and the exemption report, with `grants` written into every copy
    and the old grants gone."""
    written: dict[str, Any] = {}
    for name in [*rule_ids, EXEMPTIONS_POLICY]:
        value = document.get(name, "advisory" if name == EXEMPTIONS_POLICY else DEFAULT_LEVEL)
        entry = dict(value) if isinstance(value, dict) else {"enforcementLevel": value}
        entry.pop(GRANTS_SETTING, None)
        entry.pop(TABLE_SETTING, None)
        own = granted_for(grants, name)
        if own:
            entry[GRANTS_SETTING] = own
        if name in (SELF_GRANT_RULE, EXEMPTIONS_POLICY) and grants:
            entry[TABLE_SETTING] = {
                key: dict(sorted(r.items())) for key, r in sorted(grants.items())
            }
        written[name] = entry["enforcementLevel"] if list(entry) == ["enforcementLevel"] else entry
    return written


def _check_grants(stack: str, source: str, settings: Mapping[str, Mapping[str, Any]]) -> None:
    table = settings.get(SELF_GRANT_RULE, {}).get(TABLE_SETTING) or {}
    if not isinstance(table, dict) or not all(
        isinstance(rules, dict) and all(isinstance(r, str) for r in rules.values())
        for rules in table.values()
    ):
        raise LevelsError(
            f"{stack}: {source}: {SELF_GRANT_RULE}.{TABLE_SETTING}: expected "
            '{"<container>": {"<rule>": "<reason>"}}; regenerate it with napdms-ops policy-config'
        )
    regenerate = f"regenerate the file with napdms-ops policy-config --stack {stack} --write"
    report = settings.get(EXEMPTIONS_POLICY, {}).get(TABLE_SETTING) or {}
    if report != table:
        raise LevelsError(
            f"{stack}: {source}: {EXEMPTIONS_POLICY}.{TABLE_SETTING} differs from "
            f"{SELF_GRANT_RULE}.{TABLE_SETTING}; {regenerate}"
        )
    for name, extra in settings.items():
        own = extra.get(GRANTS_SETTING) or {}
        expected = granted_for(table, name)
        if own != expected:
            raise LevelsError(
                f"{stack}: {source}: {name}.{GRANTS_SETTING} differs from "
                f"{SELF_GRANT_RULE}.{TABLE_SETTING}; {regenerate}"
            )
    for key, rules in sorted(table.items()):
        if not key.startswith(object_prefix(stack) + "-"):
            raise LevelsError(
                f"{stack}: {source}: {SELF_GRANT_RULE}.{TABLE_SETTING}.{key}: not a container of "
                f"{stack} (its names start with {object_prefix(stack)}-); {regenerate}"
            )
        for rule_id in sorted(rules):
            if not waivable(rule_id, key):
                raise LevelsError(
                    f"{stack}: {source}: {SELF_GRANT_RULE}.{TABLE_SETTING}.{key}.{rule_id}: "
                    f"{rule_id} can never be waived outside dev; change the service so it "
                    "no longer needs it"
                )
