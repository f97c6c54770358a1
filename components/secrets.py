"""Platform secrets: generated, never written in a stack file, rotated by a config change."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_random as random


class GeneratedSecret(pulumi.ComponentResource):
    """A random 32-character secret; raising its rotation counter generates a new value."""

    value: pulumi.Output[str]
    """The secret, always a Pulumi secret (encrypted in state, masked in output)."""

    def __init__(self, name: str, rotation: int, opts: Optional[pulumi.ResourceOptions] = None):
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
