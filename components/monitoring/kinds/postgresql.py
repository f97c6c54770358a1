"""PostgreSQL: the backup agent cannot log in, connections near the limit (from the agent's
`napdms_backup_pg_*` gauges, read at each scrape: `napdms_ops/backup/server_stats.py`)."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert

CONNECTIONS = 0.8
"""Share of max_connections in use that warns before clients are refused."""


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts per PostgreSQL server the agent dumps."""
    servers = f'job="backup-agent",service=~"{"|".join(services)}"'
    return [
        Alert(
            "PostgresLoginFailing",
            f"napdms_backup_pg_up{{{servers}}} == 0",
            "critical",
            "the backup agent cannot log in to {{ $labels.service }}: backups and WAL stop too",
            "check the server's health, pg_hba.conf and the postgres password secret",
            for_="30s",
        ),
        Alert(
            "PostgresConnectionsNearLimit",
            f"napdms_backup_pg_connections{{{servers}}}"
            f" / napdms_backup_pg_max_connections{{{servers}}} > {CONNECTIONS}",
            "warning",
            "{{ $labels.service }} uses {{ $value | humanizePercentage }} of max_connections",
            "find the client holding connections (pg_stat_activity); pool them or raise the limit",
            for_="5m",
        ),
    ]
