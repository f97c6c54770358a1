"""The command line of `status` (every stack, or one in detail) and of `lifecycle retire|revive`.

`status` takes no lock: it reads the daemons and Prometheus, and writes only the lifecycle it
derives (audited). The daemons of all stacks are asked at once, so a slow or unreachable one
delays the overview by its own timeout only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

import typer

from components.settings import STACKS, SettingsError, Stack
from napdms_ops.release.runtime import DaemonError, Runtime
from napdms_ops.status.lifecycle import LifecycleError, Lifecycles
from napdms_ops.status.report import PrometheusOf, stack_prometheus, stack_status


def _read_stack(name: str) -> Stack:
    from components.settings import read_stack

    return read_stack(name)


def _docker(endpoint: str | None) -> Runtime:
    from napdms_ops.release.runtime import DockerRuntime

    return DockerRuntime(endpoint)


@dataclass
class Sources:
    """Where `status` reads from (the tests swap them): stack settings, Docker endpoints, each
    stack's Prometheus, the environment (state dir, operator)."""

    read_stack: Callable[[str], Stack] = _read_stack
    runtime: Callable[[str | None], Runtime] = _docker
    prometheus: PrometheusOf = stack_prometheus
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


SOURCES = Sources()


def _trail_errors() -> tuple[type[Exception], ...]:
    try:
        from napdms_ops.trail import TrailError
    except ImportError:
        return ()
    return (TrailError,)


def report_of(name: str, sources: Sources) -> dict[str, Any]:
    """`status --stack name` as a document; raises SettingsError, DaemonError, LifecycleError."""
    from napdms_ops.release.journal import Journal
    from napdms_ops.workstation.state import state_dir

    stack = sources.read_stack(name)
    clients: dict[str | None, Runtime] = {}

    def runtimes(endpoint: str | None) -> Runtime:
        # One connection per endpoint for the whole report.
        if endpoint not in clients:
            clients[endpoint] = sources.runtime(endpoint)
        return clients[endpoint]

    def trail() -> list[Any]:
        from napdms_ops.trail import records

        return records(name, sources.environ)

    state = state_dir(sources.environ)
    return stack_status(
        stack,
        runtimes,
        Journal(state, name, "", None),
        state,
        Lifecycles(state, environ=sources.environ),
        sources.prometheus,
        trail,
    )


def overview(stacks: tuple[str, ...], sources: Sources) -> list[tuple[str, dict | str]]:
    """Each stack's report, or why it has none (`unreachable: ...`), in `stacks` order."""

    def one(name: str) -> dict | str:
        try:
            return report_of(name, sources)
        except SettingsError as error:
            return f"settings: {'; '.join(error.lines)}"
        except DaemonError as error:
            return f"unreachable: {error}"
        except (LifecycleError, *_trail_errors()) as error:
            return f"the lifecycle was not updated: {error}"

    with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
        return list(zip(stacks, pool.map(one, stacks), strict=True))


def _fail(command: str, message: str, code: int = 2) -> NoReturn:
    typer.echo(f"napdms-ops {command}: {message}", err=True)
    raise typer.Exit(code)


def status(
    stack: str | None = typer.Option(
        None, "--stack", "-s", help="dev, staging or prod; every stack when left out."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON document instead of text."),
) -> None:
    """Every stack on one line (lifecycle, health, drift, last backup and deploy), or with
    --stack the stack in detail: each service's health and why, response time, last deploy,
    last backup, certificate expiry, then colours, versions and replicas."""
    from napdms_ops.status.view import print_overview, print_stack, summary
    from napdms_ops.workstation.terminal import console

    if stack is None:
        found = overview(STACKS, SOURCES)
        if as_json:
            documents = [
                r if isinstance(r, dict) else {"stack": name, "error": r} for name, r in found
            ]
            typer.echo(json.dumps({"stacks": documents}, indent=2))
        else:
            lines = [(n, summary(r) if isinstance(r, dict) else f"{n}: {r}") for n, r in found]
            print_overview(lines, console())
        return
    if stack not in STACKS:
        _fail("status", f"unknown stack {stack!r}; use one of: {', '.join(STACKS)}")
    try:
        report = report_of(stack, SOURCES)
    except SettingsError as error:
        _fail("status", "; ".join(error.lines))
    except DaemonError as error:
        _fail("status", f"{stack}: {error}")
    except (LifecycleError, *_trail_errors()) as error:
        _fail("status", f"{stack}: the lifecycle was not updated: {error}")
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_stack(report, console())


status_app = typer.Typer(add_completion=False, help="Every environment at a glance.")
status_app.command()(status)

lifecycle_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="A stack's lifecycle: retire it, or revive a retired one (the rest is derived).",
)


def _operator_move(command: str, stack: str, reason: str) -> None:
    from napdms_ops.workstation.state import state_dir

    if stack not in STACKS:
        _fail(f"lifecycle {command}", f"unknown stack {stack!r}; use one of: {', '.join(STACKS)}")
    if not reason.strip():
        _fail(f"lifecycle {command}", f"{stack}: give the reason with --reason")
    lifecycles = Lifecycles(state_dir(SOURCES.environ), environ=SOURCES.environ)
    move = lifecycles.retire if command == "retire" else lifecycles.revive
    try:
        after = move(stack, reason)
    except LifecycleError as error:
        _fail(f"lifecycle {command}", str(error), code=1)
    except _trail_errors() as error:
        _fail(f"lifecycle {command}", f"{stack}: not changed, the audit trail failed: {error}")
    typer.echo(f"{stack}: {after.state} since {after.since} ({after.reason})")


@lifecycle_app.command()
def retire(
    stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod."),
    reason: str = typer.Option(..., "--reason", help="Why, for the audit trail."),
) -> None:
    """Retire a stack: `status` keeps showing it, but nothing moves it until it is revived."""
    _operator_move("retire", stack, reason)


@lifecycle_app.command()
def revive(
    stack: str = typer.Option(..., "--stack", "-s", help="dev, staging or prod."),
    reason: str = typer.Option(..., "--reason", help="Why, for the audit trail."),
) -> None:
    """Bring a retired stack back: provisioning until every service is healthy."""
    _operator_move("revive", stack, reason)
