"""The operators' command line: `python -m napdms_ops --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from components.settings import PlatformSettings
from napdms_ops.deploy import DeployError
from napdms_ops.deploy import up as deploy_up

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
