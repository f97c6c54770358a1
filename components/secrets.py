"""Platform secrets: generated, or (keys another system issues) read from encrypted config; never
written in a stack file in plain text; generated ones rotate by a config change."""

from __future__ import annotations

from collections.abc import Collection, Iterable

import pulumi
import pulumi_random as random

from components.model.operator_keys import BY_SECRET
from components.model.spec import is_previous, previous_of


class GeneratedSecret(pulumi.ComponentResource):
    """A random 32-character secret; raising its rotation counter generates a new value.

    With `keep_previous` it also keeps the value from before the latest rotation, in two slots
    that take turns: `<name>-value` holds the value of the latest even counter, `<name>-value-odd`
    that of the latest odd one. Raising the counter by one replaces only the slot whose turn it
    is, so the other one still holds the previous value (at 0 it holds an unused one). Raised by
    two at once, both are new.
    """

    value: pulumi.Output[str]
    """The secret, always a Pulumi secret (encrypted in state, masked in output)."""
    previous: pulumi.Output[str] | None
    """With `keep_previous`: the value before the latest rotation, a Pulumi secret too."""

    def __init__(
        self,
        name: str,
        rotation: int,
        opts: pulumi.ResourceOptions | None = None,
        keep_previous: bool = False,
    ):
        super().__init__("napdms:secrets:GeneratedSecret", name, None, opts)
        self.previous = None
        if not keep_previous:
            # One slot that follows the counter itself, as it always has.
            self.value = pulumi.Output.secret(self._password(f"{name}-value", rotation).result)
            self.register_outputs({"value": self.value})
            return
        even = self._password(f"{name}-value", rotation - rotation % 2)
        odd = self._password(f"{name}-value-odd", max(rotation - 1 + rotation % 2, 0))
        current, previous = (odd, even) if rotation % 2 else (even, odd)
        self.value = pulumi.Output.secret(current.result)
        self.previous = pulumi.Output.secret(previous.result)
        self.register_outputs({"value": self.value, "previous": self.previous})

    def _password(self, name: str, rotation: int) -> random.RandomPassword:
        return random.RandomPassword(
            name,
            length=32,
            # Letters and digits only: the value lands in config files and SQL without quoting.
            special=False,
            keepers={"rotation": str(rotation)},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )


def generated_secrets(
    names: Iterable[str],
    rotation: dict[str, int],
    opts: pulumi.ResourceOptions,
    keep_previous: Collection[str] = (),
) -> dict[str, pulumi.Output[str]]:
    """A `GeneratedSecret` for each of `names`, by its counter in `rotation`; a `<name>-previous`
    among them is `<name>`'s previous value (see `PREVIOUS_SUFFIX`), not a secret of its own.
    Those in `keep_previous` keep theirs too, under `<name>-previous` in the result (a colour
    pinned at it during a rotation)."""
    names = list(names)
    values: dict[str, pulumi.Output[str]] = {}
    for name in names:
        if is_previous(name, names):
            continue
        keep = previous_of(name) in names or name in keep_previous
        secret = GeneratedSecret(name, rotation.get(name, 0), opts=opts, keep_previous=keep)
        values[name] = secret.value
        if keep:
            values[previous_of(name)] = secret.previous
    return values


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
