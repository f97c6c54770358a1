"""The monitoring itself: the Watchdog that always fires (the watcher on the backup host pages
when it stops arriving), configuration reloads, notifications that fail or are dropped."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert

WATCHDOG = "Watchdog"
NOTIFICATIONS_FAILING = "NotificationsFailing"
"""Alertmanager cannot deliver through one integration: routed to the others (`alertmanager`)."""


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts on Prometheus and Alertmanager, from their own metrics."""
    return [
        Alert(
            WATCHDOG,
            "vector(1)",
            "none",
            "the alerting pipeline works: this alert always fires",
            "if the watcher reports it missing, Prometheus or the QNAP is down",
        ),
        Alert(
            NOTIFICATIONS_FAILING,
            "sum by (integration) (increase(alertmanager_notifications_failed_total[5m])) > 0",
            "critical",
            "Alertmanager fails to deliver by {{ $labels.integration }}",
            "email: check the SMTP relay and smtp_password; webhook: the Rocket.Chat integration",
        ),
        Alert(
            "AlertmanagerConfigReloadFailed",
            "alertmanager_config_last_reload_successful == 0",
            "critical",
            "Alertmanager runs an old configuration: the new one failed to load",
            "amtool check-config on the generated alertmanager.yml; `pulumi up` again",
        ),
        Alert(
            "PrometheusConfigReloadFailed",
            "prometheus_config_last_reload_successful == 0",
            "critical",
            "Prometheus runs an old configuration: the new one failed to load",
            "promtool check config on the generated prometheus.yml; `pulumi up` again",
        ),
        Alert(
            "PrometheusRuleFailures",
            "increase(prometheus_rule_evaluation_failures_total[5m]) > 0",
            "critical",
            "rule group {{ $labels.rule_group }} fails to evaluate: its alerts cannot fire",
            "promtool check rules; read Prometheus' log for the failing expression",
        ),
        Alert(
            "PrometheusNotificationsDropped",
            "increase(prometheus_notifications_dropped_total[5m]) > 0",
            "critical",
            "Prometheus dropped alerts on their way to Alertmanager",
            "check Alertmanager is up and reachable on the monitoring network",
        ),
    ]
