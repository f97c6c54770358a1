"""A stack's lifecycle: provisioning, ready, degraded, recovering, retired.

    provisioning -> ready | degraded | recovering | retired
    ready        -> degraded | recovering | retired
    degraded     -> ready | recovering | retired
    recovering   -> ready | degraded | retired
    retired      -> provisioning                      (only `lifecycle revive`)

`status` derives the state each time from what it sees (`derive`); only `retire` and `revive` are
the operator's to say, and a restore into the stack's live volumes marks it recovering for as
long as it runs (`begin_recovery` / `end_recovery`). A stack never goes back to provisioning
except by revive: one that was up and lost every container is degraded. A restore onto a freshly
provisioned stack (disaster recovery) is allowed. Every transition appends an audit record
(`napdms_ops.trail`), and the state is kept in `<state dir>/lifecycle/<stack>.json`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from components.model.strict import StrictModel
from napdms_ops.release.lock import pid_alive
from napdms_ops.status.drift_input import Drift
from napdms_ops.status.health import Health

State = Literal["provisioning", "ready", "degraded", "recovering", "retired"]
TRANSITIONS: dict[State, frozenset[State]] = {
    "provisioning": frozenset({"ready", "degraded", "recovering", "retired"}),
    "ready": frozenset({"degraded", "recovering", "retired"}),
    "degraded": frozenset({"ready", "recovering", "retired"}),
    "recovering": frozenset({"ready", "degraded", "retired"}),
    "retired": frozenset({"provisioning"}),
}
Recorder = Callable[..., object]
"""`napdms_ops.trail.record`'s signature: (stack, command, result, *, changes=, reason=)."""


class LifecycleError(Exception):
    """A transition the lifecycle does not allow; the message names the stack and the fix."""


class Lifecycle(StrictModel):
    """The stored state of one stack."""

    stack: str
    state: State
    since: str
    """UTC, ISO 8601: when it entered the state."""
    reason: str


class Recovery(StrictModel):
    """The marker of a restore in progress."""

    stack: str
    reason: str
    since: str
    host: str
    pid: int


@dataclass(frozen=True)
class Signals:
    """What the lifecycle is derived from."""

    health: Mapping[str, Health]
    """Each enabled service's health."""
    declared: int
    """Containers the stack declares (every replica of every enabled service)."""
    missing: int
    """Of those, how many do not exist."""
    drift: Drift
    recovery: Recovery | None = None


def allowed(current: State | None, target: State) -> bool:
    """Whether the lifecycle may go from `current` (None: never seen) to `target`."""
    return current is None or target in TRANSITIONS[current]


def derive(current: State | None, signals: Signals) -> tuple[State, str]:
    """The state `signals` put a stack in that is now `current`, and why."""
    if current == "retired":
        return "retired", "retired by the operator; `napdms-ops lifecycle revive` brings it back"
    if signals.recovery is not None:
        return "recovering", f"restore in progress since {signals.recovery.since}"
    if signals.declared and signals.missing == signals.declared:
        if current in (None, "provisioning"):
            return "provisioning", "no declared container exists yet"
        return "degraded", "every declared container is missing"
    if current == "provisioning" and signals.missing:
        return "provisioning", f"{signals.missing} of {signals.declared} containers not created yet"
    problems = [f"{name} {state}" for name, state in signals.health.items() if state != "healthy"]
    if signals.drift.classification == "major":
        problems.append(f"major drift ({signals.drift.major} findings)")
    if problems:
        return "degraded", ", ".join(problems)
    unknown = "; drift unknown (no report)" if signals.drift.classification == "unknown" else ""
    return "ready", f"every service healthy{unknown}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _trail_record(*args: Any, **kwargs: Any) -> object:
    from napdms_ops.trail import record

    return record(*args, **kwargs)


class Lifecycles:
    """The lifecycle files of every stack under `state` (the ops CLI's state dir)."""

    def __init__(
        self,
        state: Path,
        record: Recorder = _trail_record,
        now: Callable[[], str] = _now,
        environ: Mapping[str, str] = os.environ,
    ):
        self.directory = state / "lifecycle"
        self._record = record
        self._now = now
        self._environ = environ

    def current(self, stack: str) -> Lifecycle | None:
        """The stored state of `stack` (None: never seen, or a file that does not parse)."""
        try:
            return Lifecycle.model_validate_json((self.directory / f"{stack}.json").read_text())
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def _locked(self, stack: str) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{stack}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, lifecycle: Lifecycle) -> None:
        path = self.directory / f"{lifecycle.stack}.json"
        partial = path.with_suffix(".json.tmp")
        partial.write_text(lifecycle.model_dump_json(indent=2) + "\n")
        os.replace(partial, path)

    def _change(
        self, stack: str, before: Lifecycle | None, target: State, reason: str
    ) -> Lifecycle:
        """Move to `target` (the stack's lock held): audited first, so a change the trail does
        not hold never happens."""
        state = before.state if before else None
        if not allowed(state, target):
            raise LifecycleError(
                f"{stack}: lifecycle {state} -> {target} is not allowed "
                f"(from {state}: {', '.join(sorted(TRANSITIONS[state]))})"  # type: ignore[index]
            )
        self._record(
            stack,
            "lifecycle",
            "ok",
            changes={"from": state, "to": target},
            reason=reason,
            environ=self._environ,
        )
        after = Lifecycle(stack=stack, state=target, since=self._now(), reason=reason)
        self._write(after)
        return after

    def _operator(
        self,
        stack: str,
        target: State,
        reason: str,
        refusal: Callable[[Lifecycle | None], str | None],
    ) -> Lifecycle:
        """The operator's move to `target`, unless `refusal` of the current state says why not
        (then recorded as refused, and raised)."""
        with self._locked(stack):
            before = self.current(stack)
            why = refusal(before)
            if why is not None:
                self._record(
                    stack,
                    "lifecycle",
                    "refused",
                    changes={"from": before.state if before else None, "to": target},
                    reason=why,
                    environ=self._environ,
                )
                raise LifecycleError(why)
            return self._change(stack, before, target, reason)

    def observe(self, stack: str, signals: Signals) -> Lifecycle:
        """Derive `stack`'s state from `signals` and move there (recorded when it changes)."""
        with self._locked(stack):
            before = self.current(stack)
            target, reason = derive(before.state if before else None, signals)
            if before is not None and before.state == target:
                return before.model_copy(update={"reason": reason})
            return self._change(stack, before, target, reason)

    def retire(self, stack: str, reason: str) -> Lifecycle:
        """The operator retires `stack` (from any state but retired)."""

        def refusal(before: Lifecycle | None) -> str | None:
            if before is not None and before.state == "retired":
                return f"{stack}: already retired since {before.since}"
            return None

        return self._operator(stack, "retired", reason, refusal)

    def revive(self, stack: str, reason: str) -> Lifecycle:
        """The operator brings a retired `stack` back; it is provisioning until it is ready."""

        def refusal(before: Lifecycle | None) -> str | None:
            if before is not None and before.state == "retired":
                return None
            state = before.state if before else "not tracked yet"
            return (
                f"{stack}: only a retired stack can be revived; it is {state} "
                "(`napdms-ops status --stack` shows why)"
            )

        return self._operator(stack, "provisioning", reason, refusal)

    def recovery(self, stack: str) -> Recovery | None:
        """The restore in progress on `stack`; a marker left by a restore process that is gone
        (on this host) is removed and ignored."""
        path = self.directory / f"{stack}.recovering.json"
        try:
            marker = Recovery.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None
        if marker.host == socket.gethostname() and not pid_alive(marker.pid):
            path.unlink(missing_ok=True)
            return None
        return marker

    def begin_recovery(self, stack: str, reason: str) -> Lifecycle:
        """Mark `stack` recovering while a restore writes into its live data."""
        with self._locked(stack):
            before = self.current(stack)
            if before is not None and before.state == "retired":
                raise LifecycleError(
                    f"{stack}: retired; `napdms-ops lifecycle revive --stack {stack}` first"
                )
            here = socket.gethostname()
            marker = Recovery(
                stack=stack, reason=reason, since=self._now(), host=here, pid=os.getpid()
            )
            after = (
                before
                if before is not None and before.state == "recovering"
                else self._change(stack, before, "recovering", reason)
            )
            (self.directory / f"{stack}.recovering.json").write_text(marker.model_dump_json())
            return after

    def end_recovery(self, stack: str) -> None:
        """The restore is over; the next `status` derives ready or degraded from what it sees."""
        (self.directory / f"{stack}.recovering.json").unlink(missing_ok=True)


def _lifecycles(environ: Mapping[str, str]) -> Lifecycles:
    from napdms_ops.workstation.state import state_dir

    return Lifecycles(state_dir(environ), environ=environ)


def begin_recovery(stack: str, reason: str, environ: Mapping[str, str] = os.environ) -> None:
    """For `restore`: `stack`'s live data is being restored (status shows it recovering)."""
    _lifecycles(environ).begin_recovery(stack, reason)


def end_recovery(stack: str, environ: Mapping[str, str] = os.environ) -> None:
    """For `restore`: the restore into `stack` ended, however it went."""
    _lifecycles(environ).end_recovery(stack)


def refuse_if_retired(stack: str, command: str, environ: Mapping[str, str] = os.environ) -> None:
    """Raise LifecycleError when `stack` is retired: nothing changes a retired stack until an
    operator revives it."""
    current = _lifecycles(environ).current(stack)
    if current is not None and current.state == "retired":
        raise LifecycleError(
            f"{stack}: retired since {current.since} ({current.reason}), so `{command}` changes "
            f"nothing there; `napdms-ops lifecycle revive --stack {stack} --reason ...` first"
        )


@contextlib.contextmanager
def recovering(stack: str, reason: str, environ: Mapping[str, str] = os.environ) -> Iterator[None]:
    """`begin_recovery` ... `end_recovery` around a restore, also when it fails."""
    begin_recovery(stack, reason, environ)
    try:
        yield
    finally:
        end_recovery(stack, environ)
