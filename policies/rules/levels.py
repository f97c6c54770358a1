"""Per-stack enforcement: `policies/config/<stack>.json`, the file `pulumi preview
--policy-pack-config` takes, read the same way by the runtime audit.

Format (Pulumi's): `{"<policy>": "advisory" | "mandatory" | "disabled"}` or
`{"<policy>": {"enforcementLevel": "...", "<setting>": value}}`; the key `all` sets every policy.
A policy the file does not name is mandatory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    return StackLevels(stack, levels, settings, default)
