"""PostgreSQL: reachability, the agent's WAL archive and base backups of each database, and its
connections against max_connections as the agent reads them.

The agent labels its series with the database's `service`, which its scrape job honours (the
target's `service`, backup-agent, names only the series that carry none).
"""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import (
    StackView,
    prom,
    row,
    services_with,
    timeseries,
    up_down,
)

TITLE = "PostgreSQL"
_AGENT = 'job="backup-agent"'


def panels(context: StackView) -> list[core.Panel]:
    """Each `postgresql` service's probe, WAL archive and base backups, then server metrics."""
    servers = services_with(context, "postgresql")
    names = "|".join(s.name for s in servers)
    probed = f'job="probe", service=~"{names}"'
    archived = f'{_AGENT}, service=~"{names}"'
    found = [
        row("Reachability"),
        up_down("Probe", [prom(f"probe_success{{{probed}}}", "{{service}}")]),
        timeseries(
            "Probe time", [prom(f"probe_duration_seconds{{{probed}}}", "{{service}}")], unit="s"
        ),
        row("Point-in-time recovery"),
        up_down(
            "WAL receiver",
            [prom(f"napdms_backup_wal_receiver_up{{{archived}}}", "{{service}}")],
        ),
        timeseries(
            "WAL archive age (recovery point)",
            [prom(f"napdms_backup_wal_archive_age_seconds{{{archived}}}", "{{service}}")],
            unit="s",
        ),
        timeseries(
            "Since the last base backup",
            [
                prom(
                    f"time() - napdms_backup_pg_base_last_timestamp_seconds{{{archived}}}",
                    "{{service}}",
                )
            ],
            unit="s",
        ),
        timeseries(
            "WAL shipment failures, receiver restarts, gaps (1h)",
            [
                prom(
                    f"increase(napdms_backup_wal_archive_failures_total{{{archived}}}[1h])",
                    "failures {{service}}",
                ),
                prom(
                    f"increase(napdms_backup_wal_receiver_restarts_total{{{archived}}}[1h])",
                    "restarts {{service}}",
                ),
                prom(
                    f"increase(napdms_backup_wal_gaps_total{{{archived}}}[1h])",
                    "gaps {{service}}",
                ),
            ],
            width=12,
        ),
    ]
    # The agent logs in to each server at every scrape (napdms_ops/backup/server_stats.py).
    found += [
        row("Server"),
        up_down("Agent can log in", [prom(f"napdms_backup_pg_up{{{archived}}}", "{{service}}")]),
        timeseries(
            "Connections of max_connections",
            [
                prom(
                    f"napdms_backup_pg_connections{{{archived}}}"
                    f" / napdms_backup_pg_max_connections{{{archived}}}",
                    "{{service}}",
                )
            ],
            unit="percentunit",
        ),
    ]
    return found
