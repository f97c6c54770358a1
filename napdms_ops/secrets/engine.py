"""The Automation API engine with what `secrets` needs besides `config set --path` and `up`:
setting an encrypted key, and reading the stack's state for the secrets' times."""

from __future__ import annotations

from typing import Any

from napdms_ops.release.engine import PROJECT, ApplyError, AutomationEngine


class SecretsEngine(AutomationEngine):
    """`AutomationEngine` that also sets encrypted keys and exports the stack's state."""

    def set_secret(self, key: str, value: str) -> None:
        """`pulumi config set --secret <key>`: stored encrypted in the stack file."""
        from pulumi.automation import ConfigValue

        self._stack().set_config(f"{PROJECT}:{key}", ConfigValue(value=value, secret=True))

    def state_resources(self) -> list[dict[str, Any]] | None:
        """The resources of the stack's state (`pulumi stack export`), None when it cannot be
        read (no Pulumi CLI, no stack yet)."""
        try:
            exported = self._stack().export_stack()
        except ApplyError:
            return None
        except Exception:  # the CLI failed the export: the trail is the witness then
            return None
        resources = (exported.deployment or {}).get("resources")
        return resources if isinstance(resources, list) else None
