"""The Pulumi CLI as the ops commands run it: which release, where it lives, with which
environment (backend, passphrase)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


class NoPulumiCli(DeployError):
    """Neither a `pulumi` on PATH nor the pinned CLI `napdms-ops up` installs."""


def cli_root(stack: str, environ: Mapping[str, str]) -> Path | None:
    """None when `pulumi` is on `environ`'s PATH; else the pinned CLI's root if `napdms-ops up`
    installed it; raises `NoPulumiCli` (with the fix) when there is neither."""
    if shutil.which("pulumi", path=environ.get("PATH", os.defpath)) is not None:
        return None
    root = pinned_cli_root()
    if os.access(root / "bin" / "pulumi", os.X_OK):
        return root
    raise NoPulumiCli(
        f"no Pulumi CLI on PATH nor in {root} (Pulumi {PULUMI_CLI_VERSION}); "
        f"`napdms-ops up --stack {stack}` installs it"
    )


def select_stack(stack: str, env: Mapping[str, str], root: Path | None, work_dir: Path) -> Any:
    """The Automation API's handle of `stack` in `work_dir`, run by the CLI in `root` (None: the
    one on PATH) with `env`."""
    from pulumi import automation

    command = automation.PulumiCommand(root=str(root)) if root else None
    env = dict(env)
    if root:
        # The CLI finds its language host and plugins beside it on PATH (as `up` runs it).
        env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", os.defpath)])
    return automation.select_stack(
        stack_name=stack,
        work_dir=str(work_dir),
        opts=automation.LocalWorkspaceOptions(env_vars=env, pulumi_command=command),
    )
