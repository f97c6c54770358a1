"""The monitoring itself: Prometheus and Alertmanager up and healthy, rules evaluated, and
notifications that did not reach their integration."""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import (
    StackView,
    alarm_count,
    jobs,
    prom,
    row,
    services_with,
    timeseries,
    up_down,
)

TITLE = "Monitoring"


def panels(context: StackView) -> list[core.Panel]:
    """Each monitoring service's scrape, config reloads, rule health and notifications."""
    watched = f'job=~"{jobs(services_with(context, "monitoring"))}"'
    return [
        row("Health"),
        up_down("Up", [prom(f"up{{{watched}}}", "{{job}}")], width=8),
        up_down(
            "Config loaded",
            [
                prom(f"prometheus_config_last_reload_successful{{{watched}}}", "{{job}}"),
                prom(f"alertmanager_config_last_reload_successful{{{watched}}}", "{{job}}"),
            ],
            width=8,
        ),
        alarm_count(
            "Failed rule evaluations (1h)",
            [
                prom(
                    "sum(increase(prometheus_rule_evaluation_failures_total"
                    f"{{{watched}}}[1h])) or vector(0)"
                )
            ],
            width=8,
        ),
        row("Prometheus"),
        timeseries(
            "Scrape targets down",
            [prom("count by (job) (up == 0)", "{{job}}")],
        ),
        timeseries(
            "Head series",
            [prom(f"prometheus_tsdb_head_series{{{watched}}}", "{{job}}")],
        ),
        timeseries(
            "Notifications dropped or queued",
            [
                prom(
                    f"rate(prometheus_notifications_dropped_total{{{watched}}}[$__rate_interval])",
                    "dropped",
                ),
                prom(f"prometheus_notifications_queue_length{{{watched}}}", "queued"),
            ],
        ),
        row("Alertmanager"),
        timeseries(
            "Notifications failed per integration",
            [
                prom(
                    "sum by (integration) (rate(alertmanager_notifications_failed_total"
                    f"{{{watched}}}[$__rate_interval]))",
                    "{{integration}}",
                )
            ],
            width=12,
        ),
        timeseries(
            "Notifications sent per integration",
            [
                prom(
                    "sum by (integration) (rate(alertmanager_notifications_total"
                    f"{{{watched}}}[$__rate_interval]))",
                    "{{integration}}",
                )
            ],
            width=12,
        ),
    ]
