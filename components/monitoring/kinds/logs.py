"""The log store: logs stop arriving. (The error-log rate alert is Loki's own rule, in LogQL.)"""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts from Loki's metrics."""
    if "log-shipper" not in context.services:
        return []
    job = f'job=~"{"|".join(services)}"'
    return [
        Alert(
            "LogsNotArriving",
            f"sum(rate(loki_distributor_lines_received_total{{{job}}}[10m])) == 0",
            "warning",
            "no log line reached Loki for 10 minutes",
            "check the log shipper's health and its read access to the container logs",
            for_="10m",
        )
    ]
