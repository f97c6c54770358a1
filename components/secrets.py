"""Platform secrets: generated, or (keys another system issues) read from encrypted config; never
written in a stack file in plain text; generated ones rotate by a config change."""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
import pulumi_random as random

from components.model.operator_keys import BY_SECRET


class GeneratedSecret(pulumi.ComponentResource):
    """A random 32-character secret; raising its rotation counter generates a new value."""

    value: pulumi.Output[str]
    """The secret, always a Pulumi secret (encrypted in state, masked in output)."""

    def __init__(self, name: str, rotation: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__("napdms:secrets:GeneratedSecret", name, None, opts)
        password = random.RandomPassword(
            f"{name}-value",
            length=32,
            # Letters and digits only: the value lands in config files and SQL without quoting.
            special=False,
            keepers={"rotation": str(rotation)},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        self.value = pulumi.Output.secret(password.result)
        self.register_outputs({"value": self.value})


def operator_secrets(stack: str, names: Iterable[str]) -> dict[str, pulumi.Output[str]]:
    """The values of those `names` the operator sets (`operator_keys.BY_SECRET`), from the stack's
    encrypted config. Any missing one stops the program, one line per key with the command that
    sets it, the way a wrong stack file does."""
    config = pulumi.Config()
    values: dict[str, pulumi.Output[str]] = {}
    missing: list[str] = []
    for name in names:
        key = BY_SECRET.get(name)
        if key is None:
            continue
        value = config.get_secret(key.config_key)
        if value is None:
            missing.append(
                f"{stack}: {key.config_key}: not set, but this stack needs {key.holds}; "
                f"set it with `pulumi config set --secret {key.config_key} --stack {stack}` "
                "(the value as argument, or piped in: `< file`)"
            )
        else:
            values[name] = value
    if missing:
        raise pulumi.RunError("\n".join(missing))
    return values
