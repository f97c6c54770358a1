"""How the ops commands print their reports."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # rich is imported when a report is printed, to keep the CLI's start fast
    from rich.console import Console

PIPE_WIDTH = 80
"""Columns of the report on a pipe or in CI when COLUMNS is not set (rich's own default)."""


def console(file: TextIO | None = None, environ: Mapping[str, str] = os.environ) -> Console:
    """A rich Console for the report on `file` (stdout by default): on a terminal, rich sizes it
    (COLUMNS first, else the terminal); on a pipe or in CI, COLUMNS, else 80 columns."""
    from rich.console import Console

    width = None
    # rich would take the width of stdin or stderr when either is a terminal, so
    # `napdms-ops audit | less` would be as wide as the terminal rather than what a pipe gets.
    if not (file or sys.stdout).isatty():
        columns = environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() else PIPE_WIDTH
    return Console(file=file, width=width)
