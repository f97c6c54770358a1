"""`napdms-ops up`: the Pulumi CLI with the defaults this project expects, checked first.

When no `pulumi` is on PATH, `up` installs the CLI release that matches the pinned SDK with the
Automation API, into the API's default root, and runs it from there.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pulumi.automation import PulumiCommand
from semver import Version

from components.settings.loader import PROJECT_DIR
from napdms_ops.workstation.pulumi_cli import (
    PULUMI_CLI_VERSION,
    DeployError,
    deploy_environment,
    pinned_cli_root,
)

PULUMI_DOWNLOAD_HOST = "get.pulumi.com"
# The first thing PulumiCommand.install fetches; it then runs this script, which downloads the CLI.
PULUMI_INSTALL_SCRIPT_URL = f"https://{PULUMI_DOWNLOAD_HOST}/install.sh"
MANUAL_INSTALL = (
    f"curl -fsSL https://{PULUMI_DOWNLOAD_HOST} | sh -s -- --version {PULUMI_CLI_VERSION}"
)
# Seconds the download host gets to answer before `up` gives up on installing the CLI.
PROBE_TIMEOUT_S = 5.0

# Installs the Pulumi CLI `version` so that `root`/bin/pulumi runs it; raises DeployError if not.
Installer = Callable[[Path, str], None]


def up_commands(stack: str, yes: bool) -> list[list[str]]:
    """The Pulumi CLI calls `up` makes, in order."""
    return [
        ["pulumi", "stack", "select", "--create", stack],
        ["pulumi", "up", "--stack", stack, *(["--yes"] if yes else [])],
    ]


def check_docker(stack: str) -> None:
    """Fail early, with the fix, when the docker CLI is missing (every stack sets its containers'
    PIDs limits with `docker update`) or dev's local Docker daemon does not answer."""
    docker = shutil.which("docker")
    if stack != "dev" and docker is None:
        raise DeployError(
            f"{stack}: the docker CLI is not on PATH, and `up` sets each container's PIDs limit "
            "with `docker update --pids-limit` on its host; install it (apt-get install docker.io "
            "or docker-ce-cli)"
        )
    if stack == "dev":
        if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
            raise DeployError(
                "dev: no Docker daemon answers (DOCKER_HOST or /var/run/docker.sock); start "
                "Docker, or set DOCKER_HOST"
            )


def _cannot_download(reason: str) -> str:
    return (
        f"the Pulumi CLI is not installed and could not be downloaded from "
        f"{PULUMI_DOWNLOAD_HOST} ({' '.join(reason.split())}; no internet?); install it by hand "
        f"with `{MANUAL_INSTALL}` and open a new shell"
    )


def _reason(error: Exception) -> str:
    """The last line a failed install script printed, else what the error says."""
    output = getattr(error, "output", None)
    lines = output.decode(errors="replace").strip().splitlines() if output else []
    return lines[-1] if lines else str(getattr(error, "reason", error))


def _unreachable(url: str, timeout: float) -> str | None:
    """Why `url` cannot be fetched within `timeout` seconds, or None when it answers."""
    reasons: list[str | None] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout):
                reasons.append(None)
        except (OSError, http.client.HTTPException) as error:
            reasons.append(_reason(error))

    # The socket timeout does not bound the name lookup, which can stall where no resolver
    # answers; a daemon thread that has not finished in time is left behind.
    probe = threading.Thread(target=fetch, daemon=True)
    probe.start()
    probe.join(timeout)
    return reasons[0] if reasons else f"no answer within {timeout:g} s"


def install_pulumi_cli(root: Path, version: str) -> None:
    """Install Pulumi CLI `version` into `root` with the Automation API, once its download host
    has answered a quick probe: the SDK's download has no timeout and would hang offline."""
    unreachable = _unreachable(PULUMI_INSTALL_SCRIPT_URL, PROBE_TIMEOUT_S)
    if unreachable is not None:
        raise DeployError(_cannot_download(unreachable))
    try:
        PulumiCommand.install(root=str(root), version=Version.parse(version))
    # Whatever broke (the download, the install script, the installed CLI), the fix is the same.
    except Exception as error:
        raise DeployError(_cannot_download(_reason(error))) from None


def pulumi_bin_dir(install: Installer = install_pulumi_cli) -> Path | None:
    """None when `pulumi` is on PATH; else the pinned CLI's bin directory, installed first with
    `install` unless a CLI is already there."""
    if shutil.which("pulumi") is not None:
        return None
    root = pinned_cli_root()
    if not os.access(root / "bin" / "pulumi", os.X_OK):
        install(root, PULUMI_CLI_VERSION)
    return root / "bin"


def up(stack: str, yes: bool, install: Installer = install_pulumi_cli) -> int:
    """Select (or create) the stack and run `pulumi up` in the project directory, with the pinned
    CLI (installed by `install` if need be) when no `pulumi` is on PATH. Each run that reaches
    the Pulumi CLI ends with an `up` record on the stack's audit trail: ok, or failed with the
    exit status (a declined confirmation included: Pulumi says no more than that)."""
    from napdms_ops import trail

    status, env = _run_up(stack, yes, install)
    changes: dict = {"yes": yes, "exit_status": status}
    if status == 0:
        changes["resources"] = _resource_changes(stack, env)
    trail.record(
        stack,
        "up",
        "ok" if status == 0 else "failed",
        changes=changes,
        reason=None if status == 0 else f"the Pulumi CLI exited with {status}",
    )
    return status


def history_command(stack: str) -> list[str]:
    """The Pulumi CLI call that reads what the latest update changed."""
    return ["pulumi", "stack", "history", "--stack", stack, "--json", "--page-size", "1"]


def _resource_changes(stack: str, env: dict[str, str]) -> dict[str, int] | None:
    """What the update just made changed, by operation (`{"create": 2, "same": 210}`), from the
    stack's history; None when the CLI cannot say (the record then says only that it ran)."""
    try:
        done = subprocess.run(
            history_command(stack), cwd=PROJECT_DIR, env=env, capture_output=True, text=True
        )
        latest = json.loads(done.stdout)[0] if done.returncode == 0 else {}
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None
    found = latest.get("resourceChanges") if isinstance(latest, dict) else None
    if not isinstance(found, dict):
        return None
    return {str(op): int(n) for op, n in found.items() if isinstance(n, int)}


def _run_up(stack: str, yes: bool, install: Installer) -> tuple[int, dict[str, str]]:
    """The exit status of the Pulumi CLI calls, and the environment they ran with."""
    env = deploy_environment(stack, os.environ)
    check_docker(stack)
    # Last: the checks above are cheap, an install downloads a hundred megabytes.
    bin_dir = pulumi_bin_dir(install)
    if bin_dir is not None:
        # First on PATH rather than only by absolute path: the CLI finds its language hosts and
        # bundled plugins next to it on PATH (the Automation API runs it the same way).
        env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", os.defpath)])
    for command in up_commands(stack, yes):
        status = subprocess.run(command, cwd=PROJECT_DIR, env=env).returncode
        if status != 0:
            return status, env
    return 0, env
