"""The watcher on the backup host: a second Prometheus that reads the primary's Watchdog and
Alertmanager state by federation and pages through its own Alertmanager when they stop.

A dead Prometheus, a dead QNAP, or an Alertmanager that is down or cannot deliver is thereby
noticed within `timing.WATCHER_FOR` plus a scrape, by a path that shares nothing with the
primary's."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring import timing
from components.monitoring.alert import Alert, group
from components.monitoring.kinds.monitoring import NOTIFICATIONS_FAILING, WATCHDOG
from components.monitoring.prometheus_config import CONFIG_DIR, CONFIG_FILE, RULES_FILE, dump
from components.monitoring.targets import MONITOR, scrape_targets

WATCHER = "watcher"
WATCHER_ALERTMANAGER = "watcher-alertmanager:9093"
FEDERATE_JOB = "primary"
FEDERATED = (
    f'ALERTS{{alertname=~"{WATCHDOG}|{NOTIFICATIONS_FAILING}"}}',
    'up{job="alertmanager"}',
)
"""What the watcher copies from the primary Prometheus: enough to tell the pipeline works."""


def _alerts(primary_host: str) -> list[Alert]:
    labels = (("service", MONITOR), ("host", primary_host))
    return [
        Alert(
            "MonitoringSilent",
            # The Watchdog has no `for`: it is never pending. (An alertstate matcher here would
            # become a label of the page.)
            f'absent(ALERTS{{alertname="{WATCHDOG}"}})',
            "critical",
            f"the Watchdog of {primary_host}'s Prometheus stopped arriving: its monitoring or "
            "the host itself is down, and no other alert can reach you",
            f"check {primary_host} is up; then its prometheus and alertmanager containers",
            for_=timing.WATCHER_FOR,
            labels=labels,
        ),
        Alert(
            "AlertmanagerUnreachable",
            'up{job="alertmanager"} == 0',
            "critical",
            f"{primary_host}'s Alertmanager is down: its alerts reach no one",
            f"restart the alertmanager container on {primary_host} and read its log",
            for_=timing.WATCHER_FOR,
            labels=labels,
        ),
        Alert(
            "NotificationsFailingOnPrimary",
            f'max by (integration) (ALERTS{{alertname="{NOTIFICATIONS_FAILING}",'
            'alertstate="firing"})',
            "critical",
            f"{primary_host}'s Alertmanager cannot deliver by {{{{ $labels.integration }}}}",
            "email: the SMTP relay and smtp_password; webhook: the Rocket.Chat integration",
            labels=labels,
        ),
    ]


def files(context: CatalogContext) -> dict[str, str]:
    """The watcher's prometheus.yml and rules."""
    primary = scrape_targets_from_watcher(context)
    primary_host = context.placements[MONITOR][0] if MONITOR in context.placements else "primary"
    config = {
        "global": {
            "scrape_interval": timing.seconds(timing.WATCHER_SCRAPE_S),
            "evaluation_interval": timing.seconds(timing.WATCHER_SCRAPE_S),
        },
        "rule_files": [f"{CONFIG_DIR}/{RULES_FILE}"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [WATCHER_ALERTMANAGER]}]}]},
        "scrape_configs": [
            {
                "job_name": FEDERATE_JOB,
                "honor_labels": True,
                # Federated samples carry the primary's timestamps, and Prometheus never marks
                # such series stale: a dead primary would look alive for the 5 min lookback.
                # Stamped at scrape time, they go stale the moment a scrape fails.
                "honor_timestamps": False,
                "metrics_path": "/federate",
                "params": {"match[]": list(FEDERATED)},
                "static_configs": [
                    {
                        "targets": primary,
                        "labels": {
                            "service": MONITOR,
                            "host": primary_host,
                            "stack": context.stack,
                        },
                    }
                ],
            }
        ],
    }
    rules = {"groups": [group("watcher", _alerts(primary_host))]}
    return {CONFIG_FILE: dump(config), RULES_FILE: dump(rules)}


def scrape_targets_from_watcher(context: CatalogContext) -> list[str]:
    """Where the watcher reaches the primary Prometheus: its alias when both share a host (dev),
    otherwise the primary's LAN address and published port."""
    if MONITOR not in context.services or WATCHER not in context.placements:
        return []
    watcher_host = context.placements[WATCHER][0]
    return [t.address for t in scrape_targets(context, MONITOR, from_host=watcher_host)]
