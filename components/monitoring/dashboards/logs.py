"""Logs (Loki): the rate of error lines per service, and the error lines themselves."""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import (
    GRID_WIDTH,
    StackView,
    logql,
    logs,
    row,
    timeseries,
)

TITLE = "Logs"
ERROR_PATTERN = r"(?i)\b(error|fatal|panic)\b"
"""The lines Loki's `ServiceLogsErrors` alert counts (`components/catalog/loki.py`), so the
graph shows what the alert sees; a test holds the two equal."""
# A LogQL raw string: the pattern's backslashes stay as they are.
_ERRORS = f"|~ `{ERROR_PATTERN}`"


def panels(context: StackView) -> list[core.Panel]:
    """Error lines per second by service, then the latest error lines."""
    stream = f'{{stack="{context.stack}"}}'
    return [
        row("Errors"),
        timeseries(
            "Error lines per second",
            [
                logql(
                    f"sum by (service) (rate({stream} {_ERRORS} [$__interval]))",
                    "{{service}}",
                )
            ],
            width=GRID_WIDTH,
        ),
        logs("Error lines", [logql(f"{stream} {_ERRORS}")]),
    ]
