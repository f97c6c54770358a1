"""Where the ops CLI keeps its state, and who runs it from which checkout: what every lock, audit
record, drift report and lifecycle file is stamped with."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from components.settings.loader import PROJECT_DIR


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the ops CLI keeps its locks and audit trail: `$NAPDMS_STATE_DIR`, else ~/.napdms."""
    configured = environ.get("NAPDMS_STATE_DIR")
    return Path(configured) if configured else Path.home() / ".napdms"


def _git(project_dir: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=project_dir, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def operator(environ: Mapping[str, str] = os.environ, project_dir: Path = PROJECT_DIR) -> str:
    """Who runs the command: `$NAPDMS_OPERATOR`, else git's user.email, else user@host."""
    return (
        environ.get("NAPDMS_OPERATOR")
        or _git(project_dir, "config", "user.email")
        or f"{getpass.getuser()}@{socket.gethostname()}"
    )


def commit(project_dir: Path = PROJECT_DIR) -> str | None:
    """The project's HEAD, with `-dirty` when the working tree differs; None outside git."""
    head = _git(project_dir, "rev-parse", "HEAD")
    if head is None:
        return None
    changed = _git(project_dir, "status", "--porcelain")
    return f"{head}-dirty" if changed else head
