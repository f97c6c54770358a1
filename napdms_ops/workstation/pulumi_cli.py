"""The Pulumi CLI as the ops commands run it: which release, where it lives, with which
environment (backend, passphrase)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

LOCAL_BACKEND = "file://~"

# The CLI released together with the SDK pinned in requirements.txt: the Automation API expects
# its own release, and one pin keeps every machine on the same CLI.
PULUMI_CLI_VERSION = "3.272.0"


class DeployError(Exception):
    """A precondition is missing; the message says what to do."""


def deploy_environment(stack: str, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for the Pulumi CLI: the local file backend unless one is configured, and an
    empty passphrase for dev only (its secrets are generated and worthless outside the laptop)."""
    env = dict(environ)
    env.setdefault("PULUMI_BACKEND_URL", LOCAL_BACKEND)
    if "PULUMI_CONFIG_PASSPHRASE" not in env and "PULUMI_CONFIG_PASSPHRASE_FILE" not in env:
        if stack != "dev":
            raise DeployError(
                f"{stack}: PULUMI_CONFIG_PASSPHRASE is not set; export it (or "
                "PULUMI_CONFIG_PASSPHRASE_FILE) so the stack's secrets can be decrypted"
            )
        env["PULUMI_CONFIG_PASSPHRASE"] = ""
    return env


def pinned_cli_root() -> Path:
    """Where the pinned CLI lives: the Automation API's default root for that version."""
    return Path.home() / ".pulumi" / "versions" / PULUMI_CLI_VERSION
