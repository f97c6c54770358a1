"""One lock per stack, so two operators never deploy to a stack at once.

The lock is a file, `<state dir>/locks/<stack>.lock`, created atomically (O_EXCL) and holding who
took it: operator, host, pid, command and since when. A second command fails with a message
naming the holder and the fix. A lock left by a process that is gone (same host, dead pid) is
taken over, and the new record says whose it was.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType


class LockHeld(Exception):
    """Another command holds the stack's lock; the message names it and the fix."""


@dataclass(frozen=True)
class LockRecord:
    """Who holds a stack's lock."""

    operator: str
    host: str
    pid: int
    command: str
    since: str
    """UTC, ISO 8601."""
    took_over: dict | None = None
    """The record of a dead holder this one replaced."""


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def lock_path(state_dir: Path, stack: str) -> Path:
    """The lock file of `stack`."""
    return state_dir / "locks" / f"{stack}.lock"


def read_lock(state_dir: Path, stack: str) -> LockRecord | None:
    """The record of `stack`'s lock, None when it is free."""
    try:
        data = json.loads(lock_path(state_dir, stack).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        # Half-written by a crash between create and write: nobody can be said to hold it.
        return LockRecord("unknown", "unknown", 0, "unknown", "unknown")
    return LockRecord(**{key: data.get(key) for key in LockRecord.__dataclass_fields__})


def unlock(state_dir: Path, stack: str) -> LockRecord | None:
    """Remove `stack`'s lock whoever holds it (`napdms-ops unlock`); the record removed."""
    record = read_lock(state_dir, stack)
    lock_path(state_dir, stack).unlink(missing_ok=True)
    return record


class StackLock:
    """The lock of `stack` for the duration of a `with` block (released on errors too)."""

    def __init__(
        self,
        state_dir: Path,
        stack: str,
        operator: str,
        command: str,
        host: str | None = None,
        pid: int | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        alive: Callable[[int], bool] = pid_alive,
    ):
        self.path = lock_path(state_dir, stack)
        self.stack = stack
        self._record = LockRecord(
            operator=operator,
            host=host or socket.gethostname(),
            pid=os.getpid() if pid is None else pid,
            command=command,
            since="",
        )
        self._now = now
        self._alive = alive
        self._depth = 0
        self.record: LockRecord | None = None
        """What this lock wrote while held."""

    def __enter__(self) -> StackLock:
        # Re-entrant: `deploy --all` holds it across the services it deploys one by one.
        if self._depth == 0:
            self.record = self._acquire()
        self._depth += 1
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()

    def _acquire(self) -> LockRecord:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        since = self._now().isoformat(timespec="seconds").replace("+00:00", "Z")
        record = LockRecord(**{**asdict(self._record), "since": since})
        if self._create(record):
            return record
        # Judged and replaced under a second lock, so two takers never both win.
        with open(self.path.with_suffix(".guard"), "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            holder = read_lock(self.path.parent.parent, self.stack)
            if holder is not None and self._stale(holder):
                record = LockRecord(**{**asdict(record), "took_over": asdict(holder)})
                self.path.unlink(missing_ok=True)
            if self._create(record):
                return record
        holder = read_lock(self.path.parent.parent, self.stack)
        raise LockHeld(self._held_message(holder))

    def _stale(self, holder: LockRecord) -> bool:
        return holder.host == self._record.host and holder.pid > 0 and not self._alive(holder.pid)

    def _create(self, record: LockRecord) -> bool:
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        return True

    def _held_message(self, holder: LockRecord | None) -> str:
        if holder is None:  # released between our attempt and the read: try again
            return f"{self.stack}: the deploy lock was busy; run the command again"
        return (
            f"{self.stack}: locked by {holder.operator} ({holder.command!r}, pid {holder.pid} on "
            f"{holder.host}) since {holder.since}; wait for it to finish, or if that process is "
            f"gone, run `napdms-ops unlock --stack {self.stack}`"
        )

    def _release(self) -> None:
        mine = read_lock(self.path.parent.parent, self.stack)
        # Only our own record: an operator may have unlocked and someone else locked since.
        if mine is not None and self.record is not None and mine.since == self.record.since:
            if (mine.pid, mine.host) == (self.record.pid, self.record.host):
                self.path.unlink(missing_ok=True)
        self.record = None
