"""A stack's audit trail on disk, `<state dir>/audit/<stack>.jsonl`: appended under a file lock
(two writers never fork the chain), one write per record, then copied to the mirror."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from napdms_ops.trail.chain import GENESIS, TrailRecord, line_of, seal
from napdms_ops.trail.mirror import Mirror, MirrorError, mirror_for

STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
"""What Pulumi allows in a stack name; also keeps the name a plain file and shell word."""
TAIL_CHUNK = 64 * 1024

log = logging.getLogger(__name__)


class TrailError(Exception):
    """The trail cannot be written; the message says why and what to do."""


class MirrorDiverged(MirrorError):
    """The mirror's last record is not in the local trail: one of the two was changed."""


def trail_path(state: Path, stack: str) -> Path:
    """Where the trail of `stack` is kept."""
    if not STACK_NAME.match(stack):
        raise TrailError(f"{stack!r}: not a stack name (letters, digits, '.', '_', '-')")
    return state / "audit" / f"{stack}.jsonl"


def now_utc() -> str:
    """The current time as the trail writes it: UTC, milliseconds, Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse(line: bytes) -> TrailRecord | None:
    """The record on `line`, None when it is not one."""
    try:
        return TrailRecord.model_validate_json(line)
    except ValidationError:
        return None


def _last_line(descriptor: int) -> bytes:
    """The file's last line without its newline (b"" for an empty file), read from the end."""
    end = os.lseek(descriptor, 0, os.SEEK_END)
    tail = b""
    position = end
    while position > 0:
        step = min(TAIL_CHUNK, position)
        position -= step
        tail = os.pread(descriptor, step, position) + tail
        if tail.rstrip(b"\n").count(b"\n") >= 1:
            break
    lines = tail.rstrip(b"\n").split(b"\n")
    return lines[-1] if lines != [b""] else b""


def _count_lines(descriptor: int) -> int:
    size = os.lseek(descriptor, 0, os.SEEK_END)
    data = os.pread(descriptor, size, 0)
    return len(data.rstrip(b"\n").split(b"\n")) if data.strip() else 0


def _after(descriptor: int) -> tuple[int, str]:
    """The seq and prev of the next record: after the last line's record, or after the raw
    last line when it is not one (`audit-log verify` names that line)."""
    last = _last_line(descriptor)
    if not last:
        return 1, GENESIS
    record = parse(last)
    if record is not None:
        return record.seq + 1, record.hash
    return _count_lines(descriptor) + 1, hashlib.sha256(last).hexdigest()


class Trail:
    """The trail of one stack, and its mirror."""

    def __init__(
        self,
        path: Path,
        mirror: Mirror | None,
        warn: Callable[[str], None] = log.warning,
    ):
        self.path = path
        self.mirror = mirror
        self._warn = warn

    def append(self, body: Mapping[str, Any]) -> TrailRecord:
        """Seal `body` (every field but seq, prev, hash) onto the chain and mirror it. A mirror
        that cannot be written is reported through `warn`; the local record stays."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as error:
            raise self._unwritten(body, error) from None
        try:
            # Held from reading the last record to the mirror's copy: no second writer can link
            # to the same record, and the mirror receives the records in chain order.
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            seq, prev = _after(descriptor)
            fields = seal(body, seq, prev)
            line = line_of(fields)
            # A line cut short (a full disk, a crash) stays a line of its own: verify names it.
            end = os.lseek(descriptor, 0, os.SEEK_END)
            cut = end > 0 and os.pread(descriptor, 1, end - 1) != b"\n"
            # One write of one line in append mode: even a writer that ignores the lock never
            # interleaves within a record.
            os.write(descriptor, b"\n" + line if cut else line)
            record = TrailRecord.model_validate(fields)
            if self.mirror is not None:
                self._copy(self.mirror, record, line)
        except OSError as error:
            raise self._unwritten(body, error) from None
        finally:
            os.close(descriptor)
        return record

    def _unwritten(self, body: Mapping[str, Any], error: OSError) -> TrailError:
        return TrailError(
            f"{body.get('stack')}: the audit trail {self.path} cannot be written "
            f"({error.strerror or error}), so this {body.get('command')} ({body.get('result')}) "
            "is not recorded; set NAPDMS_STATE_DIR to a writable directory"
        )

    def _copy(self, mirror: Mirror, record: TrailRecord, line: bytes) -> None:
        try:
            missing = self._missing(mirror, record, line)
            if missing:
                mirror.append(missing)
        except MirrorError as error:
            then = (
                "nothing more is sent there"
                if isinstance(error, MirrorDiverged)
                else "the next record catches the mirror up"
            )
            self._warn(
                f"{record.stack}: audit trail: record {record.seq} ({record.command}) is kept in "
                f"{self.path} but not on the mirror {mirror.where}: {error}; {then}; "
                f"`napdms-ops audit-log verify --stack {record.stack}` compares the two"
            )

    def _missing(self, mirror: Mirror, record: TrailRecord, line: bytes) -> bytes:
        """The lines the mirror lacks, the new one included (the catch-up after a failure)."""
        last = mirror.last_line()
        if not last:
            return self.path.read_bytes()
        held = parse(last)
        if held is not None and (held.seq, held.hash) == (record.seq - 1, record.prev):
            return line
        lines = self.path.read_bytes().splitlines(keepends=True)
        for index, local in enumerate(lines):
            known = parse(local)
            if held is not None and known is not None and known.hash == held.hash:
                return b"".join(lines[index + 1 :])
        raise MirrorDiverged("its last line is not in the local trail: the two diverged")

    def lines(self) -> list[bytes]:
        """Every line of the trail, oldest first."""
        try:
            return self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []

    def records(self) -> list[TrailRecord]:
        """Every record, oldest first (lines that do not parse are left out: `verify` names
        them)."""
        return [record for line in self.lines() if (record := parse(line)) is not None]


def git_state(project_dir: Path | None = None) -> tuple[str | None, bool]:
    """The project's HEAD and whether the working tree differs from it."""
    from napdms_ops.workstation.state import commit

    head = commit() if project_dir is None else commit(project_dir)
    if head is None:
        return None, False
    return head.removesuffix("-dirty"), head.endswith("-dirty")


def open_trail(stack: str, environ: Mapping[str, str] = os.environ) -> Trail:
    """The trail of `stack` in the state dir, with the stack's mirror."""
    from napdms_ops.workstation.state import state_dir

    state = state_dir(environ)
    return Trail(trail_path(state, stack), mirror_for(stack, state, environ))


def record(
    stack: str,
    command: str,
    result: str,
    *,
    service: str | None = None,
    changes: Mapping[str, Any] | None = None,
    reason: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TrailRecord:
    """Append what a state-changing command did to the trail of `stack` (and its mirror).

    `command`: up, deploy, switch, rollback, rotate, restore, drill, drift-accept, lifecycle,
    exemption, ...; `result`: ok, refused, rolled-back or failed; `changes`: JSON-able, never a
    secret value.
    """
    from napdms_ops.workstation.state import operator

    trail = open_trail(stack, environ)
    commit, dirty = git_state()
    return trail.append(
        {
            "time": now_utc(),
            "operator": operator(environ),
            "commit": commit,
            "dirty": dirty,
            "stack": stack,
            "command": command,
            "service": service,
            "changes": json.loads(json.dumps(dict(changes or {}), default=str)),
            "result": result,
            "reason": reason,
        }
    )


def records(stack: str, environ: Mapping[str, str] = os.environ) -> list[TrailRecord]:
    """Every record of `stack`'s trail, oldest first."""
    from napdms_ops.workstation.state import state_dir

    return Trail(trail_path(state_dir(environ), stack), None).records()
