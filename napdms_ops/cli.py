"""The operators' command line: `python -m napdms_ops --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from components.settings import PlatformSettings, SettingsError
from napdms_ops import audit as auditing
from napdms_ops.deploy import DeployError
from napdms_ops.deploy import up as deploy_up
from napdms_ops.images import STACKS
from napdms_ops.images import images as stack_images

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


@app.callback()
def main() -> None:
    """Operations for nap-dms-platform."""


@app.command()
def schema(output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout.")) -> None:
    """Print the JSON Schema of the stack settings (the `nap-dms-platform:*` config keys)."""
    document = PlatformSettings.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "nap-dms-platform stack settings"
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)


@app.command()
def up(
    stack: str = typer.Option("dev", "--stack", "-s", help="dev, staging or prod."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without the interactive confirmation."),
) -> None:
    """Deploy a stack with `pulumi up` (local file backend unless PULUMI_BACKEND_URL is set)."""
    try:
        status = deploy_up(stack, yes)
    except DeployError as error:
        typer.echo(f"napdms-ops up: {error}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(status)


@app.command()
def images(
    stack: Optional[str] = typer.Option(None, "--stack", "-s", help="dev, staging or prod; all three when omitted."),
) -> None:
    """Print the image references a stack runs (catalog plus overrides, and the init image), one per line."""
    if stack is not None and stack not in STACKS:
        typer.echo(f"napdms-ops images: unknown stack {stack!r}; use one of: {', '.join(STACKS)}", err=True)
        raise typer.Exit(2)
    try:
        refs = stack_images([stack] if stack else STACKS)
    except SettingsError as error:
        typer.echo(f"napdms-ops images: {error}", err=True)
        raise typer.Exit(2) from None
    for ref in refs:
        typer.echo(ref)


@app.command()
def audit(
    host: Optional[str] = typer.Option(
        None, "--host", "-H", help="Docker endpoint (unix://, ssh://, tcp://); default DOCKER_HOST, else the local socket."
    ),
    stack: str = typer.Option(
        auditing.DEFAULT_STACK, "--stack", "-s", help="Levels for containers, volumes and networks no known stack labels."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document instead of the table."),
) -> None:
    """Check a live daemon with the hardening rules, including containers no stack manages.

    Exit code 1 when any finding is mandatory, 2 when the daemon or the policy config cannot be used.
    """
    try:
        report = auditing.audit(host, stack)
    except auditing.AuditError as error:
        typer.echo(f"napdms-ops audit: {error}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(auditing.document(report), indent=2))
    else:
        from rich.console import Console

        console = Console()
        if report.verdicts:
            console.print(auditing.table(report.verdicts))
        typer.echo(auditing.summary(report))
    raise typer.Exit(report.exit_code)
