"""Backups (the agent's `napdms_backup_*` gauges): how old the last success is, whether the last
run, check and offsite copy worked, how long runs take and how much they move, the WAL archive.

The agent labels per-source series with the source's `service`, which its scrape job honours
(the target's `service`, backup-agent, names only the series that carry none).
"""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import (
    StackView,
    alarm_count,
    jobs,
    prom,
    row,
    services_with,
    stat,
    table,
    timeseries,
    up_down,
)

TITLE = "Backups"
_DAY_S = 24 * 3600


def panels(context: StackView) -> list[core.Panel]:
    """The last run at a glance, per-source ages, run trends and the WAL archive."""
    agent = f'job=~"{jobs(services_with(context, "backup"))}"'
    return [
        row("Last run"),
        stat(
            "Since the last success",
            [prom(f"time() - napdms_backup_last_success_timestamp_seconds{{{agent}}}")],
            unit="s",
            thresholds=[{"color": "green", "value": None}, {"color": "red", "value": _DAY_S}],
        ),
        up_down("Last run", [prom(f"napdms_backup_last_run_success{{{agent}}}")]),
        up_down("Integrity check", [prom(f"napdms_backup_check_success{{{agent}}}")]),
        up_down("Offsite copy", [prom(f"napdms_backup_offsite_success{{{agent}}}")]),
        alarm_count(
            "Unreadable manifests", [prom(f"napdms_backup_manifest_unreadable{{{agent}}}")]
        ),
        table(
            "Why the last run failed",
            [prom(f"napdms_backup_failure{{{agent}}} == 1", table=True)],
            width=4,
        ),
        row("Sources"),
        timeseries(
            "Since each source's last backup",
            [
                prom(
                    f"time() - napdms_backup_service_last_success_timestamp_seconds{{{agent}}}",
                    "{{service}}",
                )
            ],
            unit="s",
            width=12,
        ),
        timeseries(
            "Backed up by the last run",
            [prom(f"napdms_backup_service_success{{{agent}}}", "{{service}}")],
            width=12,
        ),
        row("Runs"),
        timeseries(
            "Run duration",
            [prom(f"napdms_backup_last_run_duration_seconds{{{agent}}}", "duration")],
            unit="s",
        ),
        timeseries(
            "Bytes read and added",
            [
                prom(f"napdms_backup_last_run_bytes{{{agent}}}", "read"),
                prom(f"napdms_backup_last_run_added_bytes{{{agent}}}", "added to the repository"),
            ],
            unit="bytes",
        ),
        timeseries(
            "Attempts per run", [prom(f"napdms_backup_last_run_attempts{{{agent}}}", "attempts")]
        ),
        row("WAL archive"),
        timeseries(
            "WAL archive age (recovery point)",
            [
                prom(
                    f"napdms_backup_wal_archive_age_seconds{{{agent}}}",
                    "{{service}}",
                )
            ],
            unit="s",
            width=12,
        ),
        timeseries(
            "Since the last base backup",
            [
                prom(
                    f"time() - napdms_backup_pg_base_last_timestamp_seconds{{{agent}}}",
                    "{{service}}",
                )
            ],
            unit="s",
            width=12,
        ),
    ]
