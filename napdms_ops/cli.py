"""The operators' command line: `napdms-ops --help` (or `python3 -m napdms_ops --help`)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import NoReturn

import typer

from components.settings import PlatformSettings, SettingsError
from napdms_ops import audit as auditing
from napdms_ops import backups
from napdms_ops import policy_config as policy_configs
from napdms_ops.deploy import DeployError, deploy_environment
from napdms_ops.deploy import up as deploy_up
from napdms_ops.drift.commands import drift_app
from napdms_ops.images import STACKS
from napdms_ops.images import images as stack_images
from napdms_ops.secrets.commands import secrets_app
from napdms_ops.status.commands import lifecycle_app
from napdms_ops.status.commands import status as status_command
from napdms_ops.status.lifecycle import LifecycleError, refuse_if_retired
from napdms_ops.trail import TrailError
from napdms_ops.trail import record as trail_record
from napdms_ops.trail.commands import audit_log_app
from napdms_ops.workstation import state as workstation
from napdms_ops.workstation.terminal import console
from policies.rules import LevelsError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
app.add_typer(audit_log_app, name="audit-log")
app.add_typer(drift_app, name="drift")
app.add_typer(lifecycle_app, name="lifecycle")
app.add_typer(secrets_app, name="secrets")
app.command(name="status")(status_command)


@app.callback()
def main() -> None:
    """Operations for nap-dms-platform."""


@app.command()
def schema(
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write to this file instead of stdout."
    ),
) -> None:
    """Print the JSON Schema of the stack settings (the `nap-dms-platform:*` config keys)."""
    document = PlatformSettings.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nap-dms-platform stack settings"
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output:
        try:
            output.write_text(text)
        except OSError as error:
            typer.echo(
                f"napdms-ops schema: --output {output}: cannot write it "
                f"({error.strerror or error}); choose a file in a writable directory",
                err=True,
            )
            raise typer.Exit(2) from None
    else:
        typer.echo(text, nl=False)


def _refuse_settings(error: SettingsError) -> NoReturn:
    """Print a stack file's mistakes as the program does, one `<stack>: <key>: ...` line each,
    and exit 2."""
    for line in error.lines:
        typer.echo(line, err=True)
    raise typer.Exit(2)


@app.command()
def up(
    stack: str = typer.Option("dev", "--stack", "-s", help="dev, staging or prod."),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Apply without the interactive confirmation."
    ),
) -> None:
    """Deploy a stack with `pulumi up` (local file backend unless PULUMI_BACKEND_URL is set)."""
    try:
        refuse_if_retired(stack, "up")
        status = deploy_up(stack, yes)
    except (DeployError, TrailError, LifecycleError) as error:
        typer.echo(f"napdms-ops up: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(status)


@app.command()
def images(
    stack: str | None = typer.Option(
        None, "--stack", "-s", help="dev, staging or prod; all three when omitted."
    ),
) -> None:
    """Print the pullable image references a stack runs (catalog plus overrides, and the init
    image), one per line; images built from this repository at `pulumi up` (the backup agent)
    have no registry reference and are left out."""
    if stack is not None and stack not in STACKS:
        typer.echo(
            f"napdms-ops images: unknown stack {stack!r}; use one of: {', '.join(STACKS)}", err=True
        )
        raise typer.Exit(2)
    try:
        refs = stack_images([stack] if stack else STACKS)
    except SettingsError as error:
        _refuse_settings(error)
    for ref in refs:
        typer.echo(ref)


@app.command()
def audit(
    host: str | None = typer.Option(
        None,
        "--host",
        "-H",
        help=(
            "Docker endpoint (unix://, ssh://, tcp://); default DOCKER_HOST, else the local socket."
        ),
    ),
    stack: str = typer.Option(
        auditing.DEFAULT_STACK,
        "--stack",
        "-s",
        help="Levels for containers, volumes and networks no known stack labels.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON document instead of the table."
    ),
) -> None:
    """Check a live daemon with the hardening rules, including containers no stack manages.

    Exit code 1 when any finding is mandatory,
    2 when the daemon or the policy config cannot be used.
    """
    try:
        report = auditing.audit(host, stack)
    except auditing.AuditError as error:
        typer.echo(f"napdms-ops audit: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(auditing.document(report), indent=2))
    else:
        auditing.print_report(report, console())
    raise typer.Exit(report.exit_code)


@app.command("policy-config")
def policy_config(
    stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod."),
    write: bool = typer.Option(False, "--write", help="Rewrite the file instead of checking it."),
) -> None:
    """Check (or with --write, regenerate) policies/config/<stack>.json: every rule named, and
    exactly the exemptions the stack's catalog grants. Exit code 1 when the file is out of date,
    2 when the stack cannot be read."""
    if stack not in STACKS:
        typer.echo(
            f"napdms-ops policy-config: unknown stack {stack!r}; use one of: {', '.join(STACKS)}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        text = policy_configs.generated(stack)
    except SettingsError as error:
        _refuse_settings(error)
    except (policy_configs.PolicyConfigError, LevelsError) as error:
        typer.echo(f"napdms-ops policy-config: {error}", err=True)
        raise typer.Exit(2) from None
    path = policy_configs.path_of(stack)
    if write:
        before = path.read_text() if path.is_file() else None
        if before == text:
            typer.echo(f"{stack}: {path} is up to date")
            return
        try:
            path.write_text(text)
        except OSError as error:
            typer.echo(f"napdms-ops policy-config: {stack}: {path}: {error.strerror}", err=True)
            raise typer.Exit(2) from None
        # Exemptions decide what the pack lets through: every change of them is on the trail.
        _audit(stack, "exemption", 0, "", policy_configs.changes(before, text))
        typer.echo(f"{stack}: wrote {path}")
    elif not path.is_file() or path.read_text() != text:
        typer.echo(
            f"{stack}: {path} differs from the catalog's grants; run napdms-ops policy-config "
            f"--stack {stack} --write and review the change",
            err=True,
        )
        raise typer.Exit(1)
    else:
        typer.echo(f"{stack}: {path} is up to date")


backup_app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Backups of a stack, run by its backup agent."
)
app.add_typer(backup_app, name="backup")

_STACK = typer.Option("dev", "--stack", "-s", help="dev, staging or prod.")


def _agent(stack: str):
    if stack not in STACKS:
        typer.echo(
            f"napdms-ops: unknown stack {stack!r}; use one of: {', '.join(STACKS)}", err=True
        )
        raise typer.Exit(2)
    try:
        return backups.find_agent(stack)
    except SettingsError as error:
        _refuse_settings(error)
    except backups.BackupCommandError as error:
        typer.echo(f"napdms-ops: {error}", err=True)
        raise typer.Exit(2) from None


def _audit(stack: str, command: str, code: int, error: str, changes: dict) -> None:
    """Append `command`'s outcome to the stack's audit trail (ok when `code` is 0); a trail that
    cannot be written is said on stderr, the command's own exit status stays."""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    try:
        trail_record(
            stack,
            command,
            "ok" if code == 0 else "failed",
            changes=changes,
            reason=None if code == 0 else lines[-1] if lines else f"exit status {code}",
        )
    except TrailError as failure:
        typer.echo(f"napdms-ops {command}: {failure}", err=True)


def _outcome(job: backups.JobResult) -> dict:
    """The volumes a job wrote and the plain values of its result (ids, sizes, times)."""
    plain = {k: v for k, v in job.result.items() if isinstance(v, str | int | float | bool)}
    return {"volumes": list(job.volumes), "result": plain}


def _finish(what: str, code: int, result: dict, error: str) -> None:
    if result:
        typer.echo(json.dumps(result, indent=2, default=str))
    if error:
        # The agent reports one line; should it ever die with a traceback, its last line (the
        # exception) is the message, not the whole trace.
        lines = [line.strip() for line in error.splitlines() if line.strip()]
        typer.echo(f"napdms-ops {what}: {lines[-1] if lines else error}", err=True)
    raise typer.Exit(code)


def _agent_command(command: str, stack: str, *args: str) -> None:
    agent = _agent(stack)
    try:
        code, result, error = backups.run_in_agent(agent, command, *args)
    except backups.BackupCommandError as failure:
        typer.echo(f"napdms-ops backup {command}: {failure}", err=True)
        raise typer.Exit(2) from None
    _finish(f"backup {command}", code, result, error)


@backup_app.command("run")
def backup_run(stack: str = _STACK) -> None:
    """Back up every service now (the agent also runs daily at the configured time).
    Exit 1 if any part failed."""
    _agent_command("run", stack)


@backup_app.command("list")
def backup_list(stack: str = _STACK) -> None:
    """The finished runs in the repository, oldest first, with each service's result."""
    _agent_command("list", stack)


@backup_app.command("verify")
def backup_verify(
    stack: str = _STACK,
    full: bool = typer.Option(False, "--full", help="Read every pack, not a subset."),
) -> None:
    """Check the repository's integrity with `restic check`."""
    _agent_command("verify", stack, *(["--full"] if full else []))


@backup_app.command("prune")
def backup_prune(stack: str = _STACK) -> None:
    """Apply the retention policy (daily/weekly/monthly) and free the space."""
    _agent_command("prune", stack)


@backup_app.command("init")
def backup_init(stack: str = _STACK) -> None:
    """Create the repository
    (and prepare the offsite bucket: versioning, lifecycle, object lock)."""
    _agent_command("init", stack)


@app.command()
def restore(
    stack: str = _STACK,
    snapshot: str = typer.Option(
        "latest",
        "--snapshot",
        help=(
            "latest, a run or snapshot id (also a safety snapshot's, in the stack that took it), "
            "or a time like 2026-11-20T03:00."
        ),
    ),
    service: list[str] = typer.Option(
        [], "--service", help="Restore only this service (repeatable)."
    ),
    target: str = typer.Option(
        "scratch",
        "--target",
        help="scratch (fresh volumes beside the stack) or a stack name such as staging.",
    ),
    label: str | None = typer.Option(
        None, "--label", help="Name part of the fresh volumes (default: the time)."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help=(
            "Make the target stack's live volumes exactly the snapshot, after a safety snapshot "
            "into the target's own repository; refused while a container mounts them."
        ),
    ),
    to: str | None = typer.Option(
        None,
        "--to",
        help=(
            "Point-in-time: recover the one --service (PostgreSQL, WAL archived) to this moment, "
            "e.g. 2026-11-20T14:05:30 (the stack's backup time zone) or with an offset, into a "
            "fresh volume."
        ),
    ),
) -> None:
    """Restore a backup of STACK into fresh volumes;
    live data only with --force, after a safety snapshot;
    PostgreSQL to any moment with --to."""
    if to is not None:
        _restore_to(stack, to, service, target, label, force, snapshot)
        return
    if force and target == "scratch":
        typer.echo(
            "napdms-ops restore: --force restores into a stack's live volumes; "
            "name it with --target <stack>",
            err=True,
        )
        raise typer.Exit(2)
    try:
        if label is not None:
            backups.check_label(label)
    except backups.BackupCommandError as error:
        typer.echo(f"napdms-ops restore: {error}", err=True)
        raise typer.Exit(2) from None
    source = _agent(stack)
    runner = source if target in ("scratch", stack) else _agent(target)
    asked = dict(
        source=stack, snapshot=snapshot, services=service, target=target, force=force, label=label
    )
    from napdms_ops.status.lifecycle import recovering

    # Live volumes replaced: the stack shows as recovering until the restore ends.
    marker = recovering(runner.stack, f"restore --force {snapshot} from {stack}") if force else None
    try:
        with marker or contextlib.nullcontext():
            job = backups.restore(source, snapshot, service, runner, label, force)
    except (LifecycleError, TrailError) as error:
        typer.echo(f"napdms-ops restore: {error}", err=True)
        raise typer.Exit(2) from None
    except backups.BackupCommandError as error:
        _audit(runner.stack, "restore", 2, str(error), asked)
        typer.echo(f"napdms-ops restore: {error}", err=True)
        raise typer.Exit(2) from None
    _audit(runner.stack, "restore", job.exit_code, job.error, {**asked, **_outcome(job)})
    _finish("restore", job.exit_code, {**job.result, "volumes": list(job.volumes)}, job.error)


def _restore_to(
    stack: str,
    to: str,
    service: list[str],
    target: str,
    label: str | None,
    force: bool,
    snapshot: str,
) -> None:
    problem = (
        "name the PostgreSQL service to recover with --service, e.g. --service postgres"
        if not service
        else "recovers one service; give one --service"
        if len(service) > 1
        else "writes a fresh volume, so --force does not apply; drop it"
        if force
        else "the moment chooses the base backup, so --snapshot does not apply; drop it"
        if snapshot != "latest"
        else None
    )
    try:
        if problem:
            raise backups.BackupCommandError(problem)
        if label is not None:
            backups.check_label(label)
    except backups.BackupCommandError as error:
        typer.echo(f"napdms-ops restore --to: {error}", err=True)
        raise typer.Exit(2) from None
    source = _agent(stack)
    runner = source if target in ("scratch", stack) else _agent(target)
    asked = dict(source=stack, to=to, services=service, target=target, label=label)
    try:
        job = backups.restore_to(source, to, service[0], runner, label)
    except backups.BackupCommandError as error:
        _audit(runner.stack, "restore", 2, str(error), asked)
        typer.echo(f"napdms-ops restore --to: {error}", err=True)
        raise typer.Exit(2) from None
    _audit(runner.stack, "restore", job.exit_code, job.error, {**asked, **_outcome(job)})
    _finish("restore", job.exit_code, {**job.result, "volumes": list(job.volumes)}, job.error)


@app.command()
def drill(
    stack: str = _STACK,
    snapshot: str = typer.Option(
        "latest", "--snapshot", help="The run to drill (default: the latest)."
    ),
    data_bytes: int | None = typer.Option(
        None,
        "--data-bytes",
        help="Extrapolate the RTO to this many bytes (default: the run's size).",
    ),
) -> None:
    """Restore into scratch space, start PostgreSQL on it, verify every table and file, time it.
    Exit 1 if over the RTO or damaged."""
    if data_bytes is not None and data_bytes < 1:
        typer.echo(
            f"napdms-ops drill: --data-bytes {data_bytes}: not a positive number of bytes; "
            "give the data size to extrapolate to (e.g. 500000000000), or omit it for the run's",
            err=True,
        )
        raise typer.Exit(2)
    agent = _agent(stack)
    asked = {"snapshot": snapshot, "data_bytes": data_bytes}
    try:
        job = backups.drill(agent, snapshot, data_bytes)
    except backups.BackupCommandError as error:
        _audit(stack, "drill", 2, str(error), asked)
        typer.echo(f"napdms-ops drill: {error}", err=True)
        raise typer.Exit(2) from None
    _audit(stack, "drill", job.exit_code, job.error, {**asked, **_outcome(job)})
    _finish("drill", job.exit_code, job.result, job.error)


def _release_error(command: str, error: Exception) -> NoReturn:
    """Print a release error as `napdms-ops <command>: <stack>: ...` lines and exit 2."""
    lines = error.lines if isinstance(error, SettingsError) else str(error).splitlines()
    for line in lines:
        typer.echo(f"napdms-ops {command}: {line}", err=True)
    raise typer.Exit(2)


def _agent_snapshot(stack: str, service: str) -> str | None:
    """A backup run by the stack's agent before `service` is replaced (it backs up every
    service, so the snapshot is consistent with the rest); its run id."""
    from napdms_ops.release.versions import ReleaseError

    try:
        code, result, error = backups.run_in_agent(backups.find_agent(stack), "run")
    except (backups.BackupCommandError, SettingsError) as failure:
        raise ReleaseError(str(failure)) from None
    if code != 0:
        raise ReleaseError(error or f"the agent's backup run exited with {code}")
    return result.get("run_id")


def _deployer(command: str, stack: str):
    """The release flows of `stack` with the real engine, daemons, proxy, lock and journal."""
    import sys

    from napdms_ops.release import journal as journals
    from napdms_ops.release.deploy import Deployer
    from napdms_ops.release.engine import ApplyError, AutomationEngine
    from napdms_ops.release.lock import StackLock
    from napdms_ops.release.runtime import DockerRuntime

    if stack not in STACKS:
        _release_error(
            command, ValueError(f"unknown stack {stack!r}; use one of: {', '.join(STACKS)}")
        )
    try:
        refuse_if_retired(stack, command)
    except LifecycleError as error:
        _release_error(command, error)
    try:
        engine = AutomationEngine(stack, deploy_environment(stack, os.environ))
        engine.select()
    except (DeployError, ApplyError) as error:
        _release_error(command, error)
    state = workstation.state_dir()
    operator = workstation.operator()
    journal = journals.Journal(state, stack, operator, workstation.commit())
    lock = StackLock(state, stack, operator, " ".join(["napdms-ops", *sys.argv[1:]]))
    return Deployer(
        engine,
        DockerRuntime,
        journal,
        lock=lock,
        snapshot=_agent_snapshot,
        silence=_silences(stack, operator),
        say=lambda line: typer.echo(f"{stack}: {line}"),
    )


def _silences(stack: str, operator: str):
    """Silences in the stack's Alertmanager, None when the stack runs none."""
    from components.settings import read_stack
    from napdms_ops.release.runtime import DockerRuntime
    from napdms_ops.release.silence import AlertmanagerSilences

    try:
        resolved = read_stack(stack)
    except SettingsError as error:
        _refuse_settings(error)
    if "alertmanager" not in resolved.services:
        return None
    return AlertmanagerSilences(
        DockerRuntime(resolved.endpoint_of("alertmanager")),
        f"{resolved.name_prefix}-alertmanager-1",
        operator,
    )


def _report(command: str, outcome) -> None:
    """One line per outcome: what happened and how long each phase took."""
    timings = ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in outcome.timings.items())
    colours = f", {outcome.from_colour} -> {outcome.to_colour}" if outcome.from_colour else ""
    head = f"{outcome.stack}: {outcome.service}: {outcome.action} {outcome.to_version}"
    detail = f"({outcome.strategy}{colours}) in {outcome.duration_s:.1f} s"
    if timings:
        detail += f" [{timings}]"
    if outcome.result == "ok":
        typer.echo(f"{head}: ok {detail}")
    else:
        typer.echo(
            f"napdms-ops {command}: {head}: {outcome.result}: {outcome.reason} {detail}", err=True
        )


def _release(command: str, run) -> None:
    """Run a release command; errors exit 2, a refusal or rollback 1."""
    from napdms_ops.release.lock import LockHeld
    from napdms_ops.release.versions import ReleaseError

    try:
        outcomes = run()
    except (ReleaseError, LockHeld, SettingsError, DeployError) as error:
        _release_error(command, error)
    for outcome in outcomes:
        _report(command, outcome)
    raise typer.Exit(max((o.exit_code for o in outcomes), default=0))


@app.command()
def deploy(
    service: str | None = typer.Argument(None, help="The service to deploy (or --all)."),
    image: str | None = typer.Option(
        None, "--image", help="TAG, sha256:<64 hex> or TAG@sha256:<64 hex> (staging/prod: pinned)."
    ),
    every: bool = typer.Option(
        False, "--all", help="Every service whose image the stack file changed, dependencies first."
    ),
    stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod."),
    watch: float | None = typer.Option(
        None, "--watch", help="Seconds of watching after the switch (default 30)."
    ),
) -> None:
    """Deploy a new image: blue-green for stateless services, held requests for those behind the
    proxy, a snapshot first for the rest; rolled back on its own when it misbehaves.
    Exit 1 when refused or rolled back, 2 on errors."""
    if every == (service is not None) or (service is not None) != (image is not None):
        _release_error(
            "deploy",
            ValueError(
                f"{stack}: give a service and --image, or --all alone "
                "(napdms-ops deploy napdms-backend --image 1.2.0@sha256:... --stack prod)"
            ),
        )
    if watch is not None and watch < 0:
        _release_error("deploy", ValueError(f"{stack}: --watch {watch:g}: use 0 or more seconds"))
    deployer = _deployer("deploy", stack)
    if every:
        _release("deploy", lambda: deployer.deploy_all(watch))
    else:
        _release("deploy", lambda: [deployer.deploy(service, image, watch)])


@app.command()
def rollback(
    service: str = typer.Argument(..., help="The service to roll back."),
    stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod."),
) -> None:
    """Back to the previous version: blue-green flips to the idle colour (nothing starts), the
    others get the image their last deploy replaced. Exit 1 when refused."""
    deployer = _deployer("rollback", stack)
    _release("rollback", lambda: [deployer.rollback(service)])


@app.command()
def unlock(stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod.")) -> None:
    """Remove the stack's deploy lock, when the command holding it is gone (a crash, a closed
    terminal on another machine)."""
    from napdms_ops.release.lock import unlock as remove_lock

    record = remove_lock(workstation.state_dir(), stack)
    if record is None:
        typer.echo(f"{stack}: not locked")
    else:
        typer.echo(
            f"{stack}: removed the lock of {record.operator} ({record.command!r}, pid "
            f"{record.pid} on {record.host}) since {record.since}"
        )
