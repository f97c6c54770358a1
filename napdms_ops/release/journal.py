"""The release records: every deploy, switch and rollback, refused and failed ones included, as
`AuditRecord`s on the stack's hash-chained audit trail (`<state dir>/audit/<stack>.jsonl`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from pydantic import ValidationError

from components.model.strict import StrictModel
from napdms_ops.trail.mirror import Mirror, mirror_for
from napdms_ops.trail.store import Trail, trail_path

Action = Literal["deploy", "switch", "rollback"]
Strategy = Literal["blue-green", "held", "snapshot"]
Result = Literal["ok", "refused", "rolled-back", "failed"]


class AuditRecord(StrictModel):
    """One deploy, switch or rollback (read from, and written as, one trail record)."""

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


RELEASE_FIELDS = ("strategy", "from_digest", "to_digest", "from_colour", "to_colour", "duration_s")
"""The fields of `AuditRecord` a trail record keeps under `changes`."""


class Journal:
    """The release records of one stack, kept on its audit trail (`napdms_ops.trail`): each
    `AuditRecord` is one chained trail record (command = action, the release fields in
    `changes`), so deploys, switches and rollbacks are hash-chained and mirrored like every other
    state-changing command."""

    def __init__(
        self,
        state: Path,
        stack: str,
        operator: str,
        commit: str | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        mirror: Mirror | None = None,
    ):
        """`mirror`: where the records are copied; by default the stack's (`mirror_for`)."""
        self.path = trail_path(state, stack)
        self.stack = stack
        self.operator = operator
        self.commit = commit
        self._now = now
        self._trail = Trail(self.path, mirror or mirror_for(stack, state))

    def append(self, **fields: object) -> AuditRecord:
        """Record one action (the fields of `AuditRecord` but time, operator, commit, stack)."""
        record = AuditRecord(
            time=self._now().isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            operator=self.operator,
            commit=self.commit,
            stack=self.stack,
            **fields,
        )
        self._trail.append(
            {
                "time": record.time,
                "operator": record.operator,
                "commit": record.commit.removesuffix("-dirty") if record.commit else None,
                "dirty": bool(record.commit and record.commit.endswith("-dirty")),
                "stack": record.stack,
                "command": record.action,
                "service": record.service,
                "changes": record.model_dump(include=set(RELEASE_FIELDS)),
                "result": record.result,
                "reason": record.reason,
            }
        )
        return record

    def records(self) -> list[AuditRecord]:
        """Every release record, oldest first (the trail's other commands left out)."""
        found = []
        for entry in self._trail.records():
            if entry.command not in get_args(Action):
                continue
            try:
                found.append(
                    AuditRecord(
                        time=entry.time,
                        operator=entry.operator,
                        commit=f"{entry.commit}-dirty" if entry.dirty else entry.commit,
                        stack=entry.stack,
                        action=entry.command,
                        service=entry.service,
                        result=entry.result,
                        reason=entry.reason,
                        **entry.changes,
                    )
                )
            except ValidationError:
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
