"""`napdms-ops up`: the Pulumi CLI with the defaults this project expects, checked first."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

PROJECT_DIR = Path(__file__).resolve().parent.parent
LOCAL_BACKEND = "file://~"


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
                f"{stack}: PULUMI_CONFIG_PASSPHRASE is not set; export it (or PULUMI_CONFIG_PASSPHRASE_FILE) "
                "so the stack's secrets can be decrypted"
            )
        env["PULUMI_CONFIG_PASSPHRASE"] = ""
    return env


def up_commands(stack: str, yes: bool) -> list[list[str]]:
    """The Pulumi CLI calls `up` makes, in order."""
    return [
        ["pulumi", "stack", "select", "--create", stack],
        ["pulumi", "up", "--stack", stack, *(["--yes"] if yes else [])],
    ]


def check_tools(stack: str) -> None:
    """Fail early, with the fix, when the Pulumi CLI or (for dev) the local Docker daemon is missing."""
    if shutil.which("pulumi") is None:
        raise DeployError(
            "the Pulumi CLI is not installed; install it with `curl -fsSL https://get.pulumi.com | sh` "
            "and open a new shell"
        )
    if stack == "dev":
        docker = shutil.which("docker")
        if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
            raise DeployError(
                "dev: no Docker daemon answers (DOCKER_HOST or /var/run/docker.sock); start Docker, "
                "or set DOCKER_HOST"
            )


def up(stack: str, yes: bool) -> int:
    """Select (or create) the stack and run `pulumi up` in the project directory."""
    check_tools(stack)
    env = deploy_environment(stack, os.environ)
    for command in up_commands(stack, yes):
        status = subprocess.run(command, cwd=PROJECT_DIR, env=env).returncode
        if status != 0:
            return status
    return 0
