"""`napdms-ops audit-log verify|show`: check a stack's trail against its chain and its mirror,
and read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NoReturn

import typer

from napdms_ops.trail.mirror import MirrorError, mirror_for, named_mirror
from napdms_ops.trail.show import moment, select, table
from napdms_ops.trail.store import STACK_NAME, Trail, TrailError, trail_path
from napdms_ops.trail.verify import Verdict, verify

audit_log_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The tamper-evident audit trail of every state-changing command.",
)


def _fail(command: str, message: str) -> NoReturn:
    typer.echo(f"napdms-ops audit-log {command}: {message}", err=True)
    raise typer.Exit(2)


def _print_verdict(verdict: Verdict) -> None:
    for problem in verdict.problems:
        at = f" line {problem.line}" if problem.line else ""
        typer.echo(
            f"{verdict.stack}: {problem.where}{at}: {problem.kind}: {problem.detail}",
            err=problem.kind != "unmirrored",
        )
    chain = "TAMPERED" if verdict.tampered else "intact"
    mirror = (
        f"; mirror {verdict.mirror}: {verdict.mirror_records} records"
        if verdict.mirror_records is not None
        else f"; mirror {verdict.mirror}: not read ({verdict.mirror_error})"
        if verdict.mirror_error
        else ""
    )
    typer.echo(f"{verdict.stack}: {verdict.records} records, {chain}{mirror}")


@audit_log_app.command("verify")
def verify_command(
    stack: str = typer.Option(..., "--stack", "-s", help="The stack whose trail to check."),
    mirror: str | None = typer.Option(
        None,
        "--mirror",
        help="Compare with this copy: a directory or ssh://user@host (default: the stack's).",
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of lines."),
) -> None:
    """Walk the chain and name each edited, inserted, deleted or moved record; against the mirror,
    name a truncated tail or a diverging record. Exit 0 intact, 1 tampered, 2 on errors."""
    from napdms_ops.workstation.state import state_dir

    try:
        state = state_dir()
        local = Trail(trail_path(state, stack), None).lines()
    except (TrailError, OSError) as error:
        _fail("verify", f"{stack}: {error}")
    copy = named_mirror(mirror, stack) if mirror else mirror_for(stack, state)
    try:
        verdict = verify(stack, local, copy.read().splitlines(), copy.where)
    except MirrorError as error:
        verdict = verify(stack, local, None, copy.where, str(error))
    if as_json:
        typer.echo(verdict.model_dump_json(indent=2))
    else:
        _print_verdict(verdict)
    raise typer.Exit(verdict.exit_code)


@audit_log_app.command("show")
def show_command(
    stack: list[str] = typer.Option(
        [], "--stack", "-s", help="A stack (repeatable; default: every stack with a trail)."
    ),
    service: str | None = typer.Option(None, "--service", help="Only this service."),
    command: str | None = typer.Option(None, "--command", help="Only this command (deploy, ...)."),
    since: str | None = typer.Option(None, "--since", help="From this time: ISO 8601 or 7d, 12h."),
    until: str | None = typer.Option(None, "--until", help="Before this time: ISO 8601 or 7d."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list instead of the table."),
) -> None:
    """The records, oldest first per stack, filtered by stack, service, command and time."""
    from napdms_ops.workstation.state import state_dir
    from napdms_ops.workstation.terminal import console

    now = datetime.now(UTC)
    try:
        start = moment(since, now) if since else None
        end = moment(until, now) if until else None
    except ValueError as error:
        _fail("show", str(error))
    state = state_dir()
    stacks = stack or sorted(
        path.stem for path in (state / "audit").glob("*.jsonl") if STACK_NAME.match(path.stem)
    )
    try:
        found = [
            record
            for name in stacks
            for record in select(
                Trail(trail_path(state, name), None).records(), service, command, start, end
            )
        ]
    except (TrailError, OSError) as error:
        _fail("show", str(error))
    if as_json:
        typer.echo(json.dumps([record.model_dump() for record in found], indent=2))
    else:
        console().print(table(found))
