"""`secrets rotate`: a new value for one secret, and every holder consistent with it.

Under the stack's deploy lock (a rotation beside a deploy is refused; so is a new restic password
while the current one does not open the repositories yet, since a second raise would drop the
only password that still does):

1. a generated secret's counter `secrets.rotation.<name>` is raised (`config set --path`), an
   operator-set key is set from the value the operator gives (`config set --secret`);
2. `up` applies it: each holder's secret file is rewritten and its replicas replaced; a
   blue-green holder's live colour is first pinned at the previous value
   (`services.<svc>.colours.<live>.secrets.<name>`), so only its idle colour is replaced;
3. what keeps its own copy is brought along (`holders.Orchestration`): the database role's
   password is changed in the database by psql (or mongosh) inside the database's container,
   reading the new value from the file `up` just wrote, so no value is ever on a host process's
   command line or environment; the restic repositories are confirmed open with the new password
   and no longer with the old (the backup agent rekeys them at its start; asked again if not);
   Grafana's admin login is reset from its file;
4. a blue-green holder then changes colour as a deploy does (`Deployer.switch_to_idle`: the
   idle colour healthy and ready through the proxy, the proxy switched, the old colour drained,
   the new one watched, switched back on trouble); the stack records the new live colour and
   drops the pin, and `up` gives the old colour, idle now, the new value too;
5. each holder's replicas are waited for until running and healthy;
6. the rotation is recorded in the audit trail, as is a refusal or failure.

An operator-set key has no previous value the program keeps, so both colours of a blue-green
holder take it together. A secret a server checks as well (a database password, Redis') changes
in that server at step 2 or 3 while the old colour still serves: from then until the switch
(seconds) a new login of the old colour is refused (Redis, replaced, also drops its
connections); a key only the service reads (NAP-DMS' app key) changes with no such gap.

A database's clients that `up` replaces start before step 3 and may fail their first health
checks: `up` is then run once more after the role changed, which replaces what failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from components.model.operator_keys import BY_SECRET
from components.settings import SettingsError
from components.settings.stack import Stack, load_stack
from napdms_ops.release.deploy import Deployer
from napdms_ops.release.engine import ApplyError, StackEngine
from napdms_ops.release.lock import LockHeld
from napdms_ops.release.proxy import ProxyError
from napdms_ops.release.runtime import DaemonError, Runtime
from napdms_ops.secrets.holders import (
    DatabaseRole,
    NotRotatable,
    Orchestration,
    ResetCommand,
    ResticKey,
    orchestration,
    replica_names,
)
from napdms_ops.secrets.inventory import holders_of

HEALTH_TIMEOUT_S = 180.0
"""How long each holder's replica may take to be running and healthy after the rotation."""
RESTIC_TIMEOUT_S = 180.0
"""How long the agent may take to move its repositories to the new password."""
REKEY_AFTER_S = 30.0
"""When the agent has not rekeyed by then (it does at its start), it is asked to."""
POLL_S = 1.0


class RotateError(Exception):
    """The rotation was refused (`result` "refused") or failed ("failed"); one line naming the
    stack, the secret and the fix."""

    def __init__(self, message: str, result: str = "failed"):
        super().__init__(message)
        self.result = result


class SecretEngine(StackEngine, Protocol):
    """The engine, and setting an encrypted config key (`pulumi config set --secret`)."""

    def set_secret(self, key: str, value: str) -> None: ...


Recorder = Callable[..., Any]
"""`napdms_ops.trail.record(stack, command, result, *, service, changes, reason)`."""


@dataclass(frozen=True)
class Rotated:
    """What a rotation did."""

    secret: str
    kind: str
    counter_from: int | None
    counter_to: int | None
    holders: tuple[str, ...]
    steps: list[str] = field(default_factory=list)
    """What was done, in order, one line each."""


# psql script: role `:role` gets the password psql itself reads from `:file` (created if
# missing). The statement is kept out of the server log, also if it fails.
SET_PASSWORD_SQL = rb"""SET log_statement = 'none';
SET log_min_error_statement = 'panic';
\set password `cat :'file'`
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') AS missing \gset
\if :missing
CREATE ROLE :"role" LOGIN PASSWORD :'password';
\else
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
\endif
"""


# The role logs in over TCP (scram, as its clients do) with the password in its file: written to
# a private temporary passfile by the shell's builtin printf, so it is on no command line.
_PG_LOGIN = """set -eu
pass=$(mktemp)
trap 'rm -f "$pass"' EXIT
printf '127.0.0.1:*:*:%s:%s\\n' "$1" "$(cat "$2")" > "$pass"
PGPASSFILE="$pass" psql -X -q -w -h 127.0.0.1 -U "$1" -d "$3" -tA -c 'SELECT 1'
"""


def _js_file(path: str) -> str:
    return f"require('fs').readFileSync({json.dumps(path)}, 'utf8').trim()"


def _mongo_update(role: DatabaseRole) -> str:
    """mongosh script: as root, set the user's password from its file."""
    return (
        f"db.getSiblingDB('admin').auth('root', {_js_file('/run/secrets/mongodb-root-password')});"
        f" db.getSiblingDB({json.dumps(role.database)}).updateUser({json.dumps(role.role)},"
        f" {{pwd: {_js_file(role.file)}}});"
    )


def _mongo_login(role: DatabaseRole) -> str:
    """mongosh script: log in as the user with the password in its file."""
    return (
        f"db.getSiblingDB({json.dumps(role.database)}).auth({json.dumps(role.role)},"
        f" {_js_file(role.file)});"
    )


# Run with the agent's own interpreter and code: which of its repositories open with the current
# password and which still with the previous one (`rekey` first, when asked); null for a
# repository not initialised yet (the agent creates it with the current password).
RESTIC_CHECK = """
import json, sys
from components.model.plan import PLAN_FILE, load_plan
from napdms_ops.backup.rekey import rekey_plan, repositories
from napdms_ops.backup.restic import Restic, ResticError
plan = load_plan(PLAN_FILE)
if sys.argv[1:] == ["rekey"]:
    rekey_plan(plan)
def opens(restic):
    try:
        restic.run("cat", "config", action="open")
    except ResticError as error:
        if error.kind == "no-repository":
            return None
        if error.kind in ("wrong-password", "missing-password"):
            return False
        raise
    return True
found = []
for repository in repositories(plan):
    restic = Restic(repository, plan.cache_dir)
    previous = repository.previous_password_file
    found.append({"repository": restic.url, "current": opens(restic),
                  "previous": bool(previous) and opens(restic.with_password_file(previous))})
print(json.dumps(found))
"""


class Rotator:
    """Rotates secrets of the stack `engine` applies. `runtime(endpoint)` gives the containers
    of a Docker endpoint; `lock` is the stack's deploy lock; `record` writes the audit trail;
    `deployer` (on the same engine, without a lock of its own: the rotation holds it) switches
    a blue-green holder's colours."""

    def __init__(
        self,
        engine: SecretEngine,
        runtime: Callable[[str | None], Runtime],
        lock: AbstractContextManager,
        record: Recorder,
        deployer: Deployer,
        say: Callable[[str], None] = lambda line: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        health_timeout_s: float = HEALTH_TIMEOUT_S,
        restic_timeout_s: float = RESTIC_TIMEOUT_S,
    ):
        self.engine = engine
        self._runtime = runtime
        self._runtimes: dict[str | None, Runtime] = {}
        self._lock = lock
        self._record = record
        self._deployer = deployer
        self._say = say
        self._sleep = sleep
        self._clock = clock
        self._health_timeout_s = health_timeout_s
        self._restic_timeout_s = restic_timeout_s

    @property
    def stack_name(self) -> str:
        """The stack this rotates secrets of."""
        return self.engine.stack

    def rotate(
        self,
        name: str,
        value: Callable[[], str] | None = None,
        resume: bool = False,
    ) -> Rotated:
        """Rotate secret `name`. An operator-set key takes its new value from `value()` (asked
        only once the rotation is allowed). `resume` applies and reconciles a counter already
        raised (after a failed rotation) instead of raising it again. Raises `RotateError`,
        recorded like a success."""
        changes: dict[str, Any] = {"secret": name}
        service: str | None = None
        try:
            stack = self._stack()
            plan = self._plan(stack, name)
            holders = holders_of(stack)[name]
            service = _service_of(plan, holders)
            changes["holders"] = list(holders)
            self._take_lock()
            try:
                rotated = self._rotate(stack, name, plan, holders, value, resume, changes)
            finally:
                self._lock.__exit__(None, None, None)
        except RotateError as error:
            self._record(
                self.stack_name,
                "rotate",
                error.result,
                service=service,
                changes=changes,
                reason=str(error),
            )
            raise
        self._record(self.stack_name, "rotate", "ok", service=service, changes=changes)
        return rotated

    # -- refusals, before anything changes ---------------------------------------------------

    def _stack(self) -> Stack:
        try:
            return load_stack(self.stack_name, self.engine.values(), self.engine.secret_keys())
        except SettingsError as error:
            raise RotateError(str(error).splitlines()[0], "refused") from None

    def _plan(self, stack: Stack, name: str) -> Orchestration:
        known = stack.settings.rotatable_secrets()
        if name not in known:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: no service of this stack reads a secret "
                f"of that name; use one of: {', '.join(known)}",
                "refused",
            )
        try:
            return orchestration(stack, name)
        except NotRotatable as error:
            raise RotateError(str(error), "refused") from None

    def _take_lock(self) -> None:
        try:
            self._lock.__enter__()
        except LockHeld as error:
            raise RotateError(f"{error} (secrets rotate)", "refused") from None

    # -- the rotation ------------------------------------------------------------------------

    def _rotate(
        self,
        stack: Stack,
        name: str,
        plan: Orchestration,
        holders: tuple[str, ...],
        value: Callable[[], str] | None,
        resume: bool,
        changes: dict[str, Any],
    ) -> Rotated:
        key = BY_SECRET.get(name)
        steps: list[str] = []

        def done(*lines: str) -> None:
            for line in lines:
                steps.append(line)
                self._say(line)

        if isinstance(plan, ResticKey) and not resume:
            self._restic_settled(stack, plan)
        if key is not None:
            kind, before, after = "operator-set", None, None
            if not resume:
                self._set_operator_key(stack, name, value)
                done(f"set {key.config_key} (encrypted)")
        else:
            kind = "generated"
            before = stack.settings.secrets.rotation.get(name, 0)
            after = before if resume else before + 1
            changes.update({"from": before, "to": after})
        # Blue-green holders take a generated secret one colour at a time: the live colour is
        # pinned at the previous value while the idle one gets the new value and takes over.
        coloured = [h for h in holders if stack.services[h].colours]
        pinned = _pinned(stack, name, coloured) if resume else {}
        if key is None and not resume:
            pinned = {holder: _pin(stack, holder, name) for holder in coloured}
            self.engine.set_values({
                f"secrets.rotation.{name}": str(after),
                **{pin: str(before) for pin in pinned.values()},
            })  # fmt: skip
            done(f"secrets.rotation.{name}: {before} -> {after}")
            done(*[f"{h}: live colour pinned at rotation {before}" for h in pinned])
        message = f"secrets rotate {name}"
        failed = self._up(name, message, tolerate=isinstance(plan, DatabaseRole))
        done("up" + (f" (first pass failed: {failed})" if failed else ""))
        # An operator-set key has no previous value kept to pin a colour at.
        done(*[
            f"{holder}: both colours restarted together (an operator-set key)"
            for holder in coloured
            if holder not in pinned
        ])  # fmt: skip
        if isinstance(plan, DatabaseRole):
            self._set_role(stack, name, plan)
            done(f"{plan.service}: role {plan.role}'s password set from the new file")
            if failed:
                self._up(name, f"{message}: after the database role changed")
                done("up again")
            self._check_login(stack, name, plan)
            done(f"{plan.service}: role {plan.role} logs in with the new password")
        elif isinstance(plan, ResticKey):
            done(*self._check_restic(stack, plan))
        elif isinstance(plan, ResetCommand):
            self._reset(stack, name, plan)
            done(f"{plan.service}: login reset from the new file")
        if pinned:
            done(*self._switch_colours(name, pinned))
            self._up(name, f"{message}: the old colours")
            done("up: the old colours, idle now, take the new value")
        for holder in holders:
            self._wait_healthy(stack, name, holder)
        done(f"healthy: {', '.join(holders)}")
        return Rotated(name, kind, before, after, holders, steps)

    def _switch_colours(self, name: str, pinned: Mapping[str, str]) -> list[str]:
        """Switch each pinned holder to its idle colour (which has the new value) as a deploy
        does, then record that colour as live and drop the pin; `pinned`: holder -> its pin's
        config path. A holder that does not take over keeps its pin and fails the rotation."""
        steps: list[str] = []
        for holder, pin in pinned.items():
            stack = self._stack()
            colours = stack.services[holder].colours
            assert colours is not None
            live, idle = colours.live, colours.idle
            try:
                problem = self._deployer.switch_to_idle(stack, holder, f"secrets rotate {name}")
            except (ProxyError, DaemonError) as error:
                problem = f"switching the proxy failed ({error})"
            if problem:
                raise RotateError(
                    f"{stack.name}: secrets rotate {name}: {holder}: {problem}; {live} still "
                    f"holds the previous value ({pin}); " + self._resume_hint(name)
                )
            others = set(colours.image(live).secrets) - {name}
            self.engine.set_values({f"services.{holder}.colours.live": idle})
            self.engine.remove_values([pin if others else pin.rsplit(".", 1)[0]])
            steps.append(f"{holder}: {idle} (new value) live, {live} unpinned")
        return steps

    def _set_operator_key(self, stack: Stack, name: str, value: Callable[[], str] | None) -> None:
        key = BY_SECRET[name]
        if value is None:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: the operator sets {key.config_key}; give "
                "the new value on standard input or at the prompt",
                "refused",
            )
        new = value()
        problem = key.problem(new)
        if problem:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: the new value {problem} (not shown); "
                "run the command again with the right value",
                "refused",
            )
        self.engine.set_secret(key.config_key, new)

    def _up(self, name: str, message: str, tolerate: bool = False) -> str | None:
        """Apply the stack; with `tolerate`, a failure is returned (a database's clients may
        fail until its role changed) rather than raised."""
        try:
            self.engine.up(message)
        except ApplyError as error:
            if tolerate:
                return error.reason
            raise RotateError(
                f"{self.stack_name}: {message}: up failed ({error.reason}); fix the cause and run "
                f"`napdms-ops secrets rotate {name} --stack {self.stack_name} --resume` (the new "
                "value is set; --resume applies it without setting it again)"
            ) from None
        return None

    # -- holders -----------------------------------------------------------------------------

    def _runtime_of(self, stack: Stack, service: str, host: str | None = None) -> Runtime:
        """The containers of the host running `service` (its first, unless `host` is named)."""
        host = host or stack.placements[service][0]
        endpoint = stack.settings.hosts[host].docker_host
        if endpoint not in self._runtimes:
            self._runtimes[endpoint] = self._runtime(endpoint)
        return self._runtimes[endpoint]

    def _exec(
        self, stack: Stack, name: str, service: str, argv: list[str], stdin: bytes | None = None
    ) -> tuple[int, str]:
        container = replica_names(stack, service)[0]
        try:
            return self._runtime_of(stack, service).exec(container, argv, stdin=stdin)
        except DaemonError as error:
            raise RotateError(f"{stack.name}: secrets rotate {name}: {error}") from None

    def _resume_hint(self, name: str) -> str:
        return (
            f"run `napdms-ops secrets rotate {name} --stack {self.stack_name} --resume` once "
            "it is fixed"
        )

    def _set_role(self, stack: Stack, name: str, role: DatabaseRole) -> None:
        if role.engine == "postgresql":
            argv = [
                "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "--username", stack.services[role.service].env.get("POSTGRES_USER", "postgres"),
                "--dbname", "postgres",
                "--set", f"role={role.role}", "--set", f"file={role.file}",
            ]  # fmt: skip
            code, output = self._exec(stack, name, role.service, argv, SET_PASSWORD_SQL)
        else:
            argv = ["mongosh", "--quiet", "--eval", _mongo_update(role)]
            code, output = self._exec(stack, name, role.service, argv)
        if code != 0:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: setting role {role.role}'s password in "
                f"{role.service} failed (exit {code}: {_errors_only(output)}); "
                + self._resume_hint(name)
            )

    def _check_login(self, stack: Stack, name: str, role: DatabaseRole) -> None:
        if role.engine == "postgresql":
            argv = ["sh", "-c", _PG_LOGIN, "sh", role.role, role.file, role.database]
            code, output = self._exec(stack, name, role.service, argv)
            ok = code == 0 and output.strip() == "1"
        else:
            argv = ["mongosh", "--quiet", "--eval", _mongo_login(role)]
            code, output = self._exec(stack, name, role.service, argv)
            ok = code == 0
        if not ok:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: role {role.role} does not log in to "
                f"{role.service} with the new password (exit {code}: {_errors_only(output)}); "
                + self._resume_hint(name)
            )

    def _reset(self, stack: Stack, name: str, reset: ResetCommand) -> None:
        self._wait_healthy(stack, name, reset.service)
        code, output = self._exec(stack, name, reset.service, list(reset.argv))
        if code != 0:
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: resetting the login in {reset.service} "
                f"failed (exit {code}: {_errors_only(output)}); " + self._resume_hint(name)
            )

    def _check_restic(self, stack: Stack, key: ResticKey) -> list[str]:
        """Wait until every repository opens with the new password and not the old one; ask the
        agent to rekey if it has not by `REKEY_AFTER_S`."""
        name = "restic-password"
        self._wait_healthy(stack, name, key.service)
        started = self._clock()
        asked = False
        steps: list[str] = []
        while True:
            rekey = not asked and self._clock() - started >= REKEY_AFTER_S
            argv = ["python3", "-c", RESTIC_CHECK, *(["rekey"] if rekey else [])]
            code, output = self._exec(stack, name, key.service, argv)
            if rekey:
                asked = True
                steps.append(f"{key.service}: asked to rekey its repositories")
            found = _json_list(output) if code == 0 else None
            if found and all(r["current"] is not False and not r["previous"] for r in found):
                urls = ", ".join(r["repository"] for r in found)
                steps.append(f"restic: {urls} open with the new password, not the old")
                return steps
            if self._clock() - started >= self._restic_timeout_s:
                state = found if found is not None else _errors_only(output)
                raise RotateError(
                    f"{stack.name}: secrets rotate {name}: the backup repositories are not "
                    f"moved to the new password ({state}); read the agent's `rekey` log line, "
                    "then " + self._resume_hint(name)
                )
            self._sleep(POLL_S)

    def _restic_settled(self, stack: Stack, key: ResticKey) -> None:
        """Refuse a new restic password while the current one does not open every repository:
        an earlier rotation is unfinished, and raising the counter again would replace the
        previous password too, the only one that opens them then."""
        name = "restic-password"
        code, output = self._exec(stack, name, key.service, ["python3", "-c", RESTIC_CHECK])
        found = _json_list(output) if code == 0 else None
        if found is None or any(r["current"] is False for r in found):
            state = found if found is not None else _errors_only(output)
            raise RotateError(
                f"{stack.name}: secrets rotate {name}: the current restic-password does not open "
                f"every backup repository ({state}), so an earlier rotation is unfinished; "
                f"finish it with `napdms-ops secrets rotate {name} --stack {stack.name} "
                "--resume`, not a new one",
                "refused",
            )

    def _wait_healthy(self, stack: Stack, name: str, service: str) -> None:
        """Every replica of `service`, on each host running it, running and healthy."""
        deadline = self._clock() + self._health_timeout_s
        for host in stack.placements[service]:
            runtime = self._runtime_of(stack, service, host)
            for container in replica_names(stack, service):
                self._wait_for(stack, name, runtime, container, deadline)

    def _wait_for(
        self, stack: Stack, name: str, runtime: Runtime, container: str, deadline: float
    ) -> None:
        while True:
            try:
                state = runtime.state(container)
            except DaemonError as error:
                raise RotateError(f"{stack.name}: secrets rotate {name}: {error}") from None
            if state.exists and state.running and state.health in (None, "healthy"):
                return
            if self._clock() >= deadline:
                what = "missing" if not state.exists else (state.health or "not running")
                raise RotateError(
                    f"{stack.name}: secrets rotate {name}: {container} is {what} after the "
                    f"rotation; read `docker logs {container}`, then " + self._resume_hint(name)
                )
            self._sleep(POLL_S)


def _pin(stack: Stack, holder: str, name: str) -> str:
    """The config path that pins blue-green `holder`'s live colour at `name`'s previous value."""
    colours = stack.services[holder].colours
    assert colours is not None
    return f"services.{holder}.colours.{colours.live}.secrets.{name}"


def _pinned(stack: Stack, name: str, coloured: list[str]) -> dict[str, str]:
    """The blue-green holders whose live colour is pinned at `name`'s previous value (left by a
    rotation that failed before its switch), with the pin's config path."""
    pinned = {}
    for holder in coloured:
        colours = stack.services[holder].colours
        if colours is not None and name in colours.image(colours.live).secrets:
            pinned[holder] = _pin(stack, holder, name)
    return pinned


def _service_of(plan: Orchestration, holders: tuple[str, ...]) -> str | None:
    """The service a rotation is recorded against: the system keeping its own copy, else the
    only holder."""
    if isinstance(plan, (DatabaseRole, ResticKey, ResetCommand)):
        return plan.service
    return holders[0] if len(holders) == 1 else None


def _errors_only(output: str) -> str:
    """The error lines of a tool's output, short: never the script or statement it ran (psql
    quotes a failing statement's line, which could hold the value)."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip().startswith(("ERROR:", "FATAL:", "psql:", "MongoServerError", "Error"))
    ]
    return "; ".join(lines)[:300] or "no error message"


def _json_list(output: str) -> list[Mapping[str, Any]] | None:
    lines = output.strip().splitlines()
    try:
        found = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return found if isinstance(found, list) else None
