"""Each PostgreSQL server's connections against its limit, read at scrape time by the agent that
already logs in to dump it: the `postgresql` kind's alert on connections near the limit reads
these, and no exporter with a second superuser login is needed."""

from __future__ import annotations

import subprocess

from components.model.plan import BackupPlan, PostgresqlSource
from napdms_ops.backup.hooks.postgresql import environment
from napdms_ops.backup.metrics import family

QUERY = (
    "SELECT count(*), current_setting('max_connections') FROM pg_stat_activity "
    "WHERE backend_type = 'client backend'"
)
TIMEOUT_S = 3
"""A scrape must not wait for a hung server; its probe alerts on that."""


def connections(source: PostgresqlSource) -> tuple[float, float] | None:
    """(client connections, max_connections) of the server, or None when it cannot be asked."""
    env = environment(source) | {"PGCONNECT_TIMEOUT": str(TIMEOUT_S)}
    try:
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", " ", "-d", "postgres", "-c", QUERY],
            capture_output=True,
            env=env,
            timeout=TIMEOUT_S + 1,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    used, limit = done.stdout.decode().split()
    return float(used), float(limit)


def render_metrics(plan: BackupPlan) -> str:
    """`napdms_backup_pg_up`, `..._pg_connections`, `..._pg_max_connections` per server."""
    servers = [s for s in plan.sources if isinstance(s, PostgresqlSource)]
    if not servers:
        return ""
    readings = {s.service: connections(s) for s in servers}
    gauges = (
        ("pg_up", "1 if the agent could log in to the server just now.", None),
        ("pg_connections", "Client connections the server holds.", 0),
        ("pg_max_connections", "The server's max_connections.", 1),
    )
    lines: list[str] = []
    for short, help_text, index in gauges:
        samples = [
            (service, float(reading is not None) if index is None else reading[index])
            for service, reading in readings.items()
            if index is None or reading is not None
        ]
        if not samples:
            continue
        labelled = [(f'stack="{plan.stack}",service="{service}"', v) for service, v in samples]
        lines += family(f"napdms_backup_{short}", "gauge", help_text, labelled)
    return "\n".join(lines) + "\n"
