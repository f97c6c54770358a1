"""`napdms-ops secrets list|rotate`: every secret's age and due date, and rotation (never a
value). Registered in the CLI as `app.add_typer(secrets_app, name="secrets")`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer

from components.settings import STACKS, SettingsError, read_stack
from napdms_ops.secrets.inventory import SecretAge, inventory, iso
from napdms_ops.secrets.rotate import RotateError, Rotator

secrets_app = typer.Typer(
    help="Secrets of a stack: kind, age, due date (`list`), rotation (`rotate`); never a value.",
    no_args_is_help=True,
)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _known_stack(stack: str, command: str) -> None:
    if stack not in STACKS:
        _fail(f"secrets {command}: unknown stack {stack!r}; use one of: {', '.join(STACKS)}", 2)


# -- seams the tests replace ---------------------------------------------------------------------


def _engine(stack: str) -> Any:
    """The stack's `SecretsEngine` (Automation API); raises DeployError/ApplyError."""
    from napdms_ops.secrets.engine import SecretsEngine
    from napdms_ops.workstation.pulumi_cli import deploy_environment

    return SecretsEngine(stack, deploy_environment(stack, os.environ))


def _state(stack: str) -> list[dict[str, Any]] | None:
    """The resources of the stack's Pulumi state, None where it cannot be read (no CLI)."""
    try:
        return _engine(stack).state_resources()
    except Exception:  # no passphrase, no CLI: the trail is the witness
        return None


def _records(stack: str) -> Sequence[Any]:
    from napdms_ops.trail import records

    return records(stack)


def _record(*args: Any, **kwargs: Any) -> Any:
    from napdms_ops.trail import record

    return record(*args, **kwargs)


def _runtime(endpoint: str | None) -> Any:
    from napdms_ops.release.runtime import DockerRuntime

    return DockerRuntime(endpoint)


def _deployer(engine: Any, say: Callable[[str], None]) -> Any:
    """The release flows on `engine`'s stack, without a lock of their own (the rotation holds
    the stack's), journalling its switches on the stack's audit trail."""
    from napdms_ops.release.deploy import Deployer
    from napdms_ops.release.journal import Journal
    from napdms_ops.workstation.state import commit, operator, state_dir

    journal = Journal(state_dir(), engine.stack, operator(), commit())
    return Deployer(engine, _runtime, journal, say=say)


def _lock(stack: str) -> Any:
    from napdms_ops.release.lock import StackLock
    from napdms_ops.workstation.state import operator, state_dir

    return StackLock(state_dir(), stack, operator(), " ".join(["napdms-ops", *sys.argv[1:]]))


def _now() -> datetime:
    return datetime.now(UTC)


# -- list ----------------------------------------------------------------------------------------


@secrets_app.command("list")
def list_command(
    stack: str = typer.Option(..., "--stack", "-s", help="The stack whose secrets to list."),
    as_json: bool = typer.Option(False, "--json", help="A JSON list instead of the table."),
) -> None:
    """Each secret the stack uses: kind, rotation counter, created, last rotation, age, due date,
    overdue. Times come from Pulumi state where the CLI can read it, else the audit trail; what
    neither knows is shown as unknown."""
    _known_stack(stack, "list")
    try:
        resolved = read_stack(stack)
    except SettingsError as error:
        _fail(str(error), 2)
    try:
        records = _records(stack)
    except Exception as error:  # an unreadable trail: say so, the state may still know
        typer.echo(f"{stack}: secrets list: the audit trail is unreadable ({error})", err=True)
        records = []
    ages = inventory(resolved, records, _state(stack), _now())
    if as_json:
        typer.echo(json.dumps([age.as_json() for age in ages], indent=2))
        return
    _table(stack, ages)
    unknown = [age.name for age in ages if age.source == "unknown"]
    if unknown:
        typer.echo(f"{stack}: {len(unknown)} secrets of unknown age: no Pulumi state could be "
                   "read (is the Pulumi CLI installed?) and the audit trail has no `up` or "
                   "`rotate` of them")  # fmt: skip
    overdue = [age.name for age in ages if age.overdue]
    if overdue:
        typer.echo(f"{stack}: overdue: {', '.join(overdue)}; rotate with `napdms-ops secrets "
                   f"rotate <name> --stack {stack}`")  # fmt: skip


def _day(moment: datetime | None) -> str:
    return (iso(moment) or "unknown").replace("T", " ")


def _table(stack: str, ages: Sequence[SecretAge]) -> None:
    from rich import box
    from rich.table import Table

    from napdms_ops.workstation.terminal import console

    table = Table(title=f"secrets of {stack}", box=box.SIMPLE_HEAD)
    columns = ("secret", "kind", "rotation", "created", "last rotation", "age", "due", "overdue")
    for column in (*columns, "from"):
        table.add_column(column)
    for age in ages:
        days = age.age
        table.add_row(
            age.name,
            age.kind,
            "-" if age.rotation is None else str(age.rotation),
            _day(age.created),
            _day(age.last_rotation) if age.last_rotation or age.source == "unknown" else "never",
            "unknown" if days is None else f"{days.days} d",
            _day(age.due),
            {True: "OVERDUE", False: "no", None: "unknown"}[age.overdue],
            age.source,
        )
    console().print(table)


# -- rotate --------------------------------------------------------------------------------------


def _read_value(name: str) -> Callable[[], str]:
    """The operator's new value: piped in on stdin, else asked at a hidden prompt (twice)."""

    def read() -> str:
        if not sys.stdin.isatty():
            return sys.stdin.read().rstrip("\n")
        return typer.prompt(f"new value of {name}", hide_input=True, confirmation_prompt=True)

    return read


@secrets_app.command("rotate")
def rotate_command(
    name: str = typer.Argument(..., help="The secret, as `secrets list` names it."),
    stack: str = typer.Option(..., "--stack", "-s", help="The stack to rotate it in."),
    resume: bool = typer.Option(
        False, "--resume", help="Finish a rotation that failed after its new value was set."
    ),
) -> None:
    """A new value for one secret, applied, and every holder made consistent: a database role's
    password changed in the database, the backup repositories moved to a new restic password,
    the holders healthy again. An operator-set key reads its new value from stdin or a hidden
    prompt. Refused while another command holds the stack's deploy lock."""
    from napdms_ops.release.engine import ApplyError
    from napdms_ops.workstation.pulumi_cli import DeployError

    _known_stack(stack, "rotate")
    try:
        engine = _engine(stack)
        engine.select()
    except (DeployError, ApplyError) as error:
        _fail(f"{stack}: secrets rotate {name}: {error}", 2)
    # Why the audit trail refused the record, if it did: that must not hide what the rotation
    # did, so both are said.
    unrecorded: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        try:
            _record(*args, **kwargs)
        except Exception as error:
            unrecorded.append(str(error))

    def not_recorded() -> str:
        return f"not in the audit trail ({unrecorded[0]}); record it by hand"

    def say(line: str) -> None:
        typer.echo(f"{stack}: {line}")

    rotator = Rotator(engine, _runtime, _lock(stack), record, _deployer(engine, say), say=say)
    try:
        rotated = rotator.rotate(name, value=_read_value(name), resume=resume)
    except RotateError as error:
        lines = [str(error)]
        if unrecorded:
            lines.append(f"{stack}: secrets rotate {name}: {not_recorded()}")
        _fail("\n".join(lines), 2 if error.result == "refused" else 1)
    if unrecorded:
        _fail(f"{stack}: {name} rotated, but {not_recorded()}", 1)
    counter = (
        f" (rotation {rotated.counter_from} -> {rotated.counter_to})"
        if rotated.counter_to is not None
        else ""
    )
    typer.echo(f"{stack}: {name} rotated{counter}; holders: {', '.join(rotated.holders)}")
