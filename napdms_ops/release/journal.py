"""The release audit trail: one JSON object per line in `<state dir>/audit/<stack>.jsonl`, for
every deploy, switch and rollback, refused and failed ones included."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from components.model.strict import StrictModel
from components.settings.loader import PROJECT_DIR

Action = Literal["deploy", "switch", "rollback"]
Strategy = Literal["blue-green", "held", "snapshot"]
Result = Literal["ok", "refused", "rolled-back", "failed"]


def state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the ops CLI keeps its locks and audit trail: `$NAPDMS_STATE_DIR`, else ~/.napdms."""
    configured = environ.get("NAPDMS_STATE_DIR")
    return Path(configured) if configured else Path.home() / ".napdms"


class AuditRecord(StrictModel):
    """One line of the audit trail."""

    time: str
    """UTC, ISO 8601."""
    operator: str
    commit: str | None
    """The project's git commit (`-dirty` when the tree differs from it); None outside git."""
    stack: str
    action: Action
    service: str
    strategy: Strategy
    from_digest: str | None
    """The version before: `TAG@sha256:...` when pinned, `TAG` when the stack pins none (the
    form `--image` takes, so a rollback can name it)."""
    to_digest: str | None
    from_colour: str | None
    """Blue-green only: the live colour before, and after."""
    to_colour: str | None
    duration_s: float
    result: Result
    reason: str | None
    """Why it was refused, rolled back or failed; None when ok."""


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


class Journal:
    """The audit trail of one stack."""

    def __init__(
        self,
        state: Path,
        stack: str,
        operator: str,
        commit: str | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.path = state / "audit" / f"{stack}.jsonl"
        self.stack = stack
        self.operator = operator
        self.commit = commit
        self._now = now

    def append(self, **fields: object) -> AuditRecord:
        """Record one action (the fields of `AuditRecord` but time, operator, commit, stack)."""
        record = AuditRecord(
            time=self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            operator=self.operator,
            commit=self.commit,
            stack=self.stack,
            **fields,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent writers never interleave a record.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, (record.model_dump_json() + "\n").encode())
        finally:
            os.close(descriptor)
        return record

    def records(self) -> list[AuditRecord]:
        """Every record, oldest first (lines that do not parse are skipped)."""
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            try:
                found.append(AuditRecord.model_validate_json(line))
            except ValueError:
                continue
        return found

    def last(self, service: str, **match: object) -> AuditRecord | None:
        """The newest record of `service` whose fields equal `match`."""
        for record in reversed(self.records()):
            if record.service == service and all(
                getattr(record, key) == value for key, value in match.items()
            ):
                return record
        return None
