"""The operators' command line: `python -m napdms_ops --help`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from components.settings import PlatformSettings

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
