"""Every generated alert, tested by Prometheus' own `promtool test rules`: the failure it is for
fires it (with the labels routing and inhibition read), and the near misses do not."""

from __future__ import annotations

import pytest
import yaml

from components.catalog import generated_files
from components.settings.stack import read_stack
from tests.monitoring_rules import PROMTOOL, Case, run

pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) missing")

DEV = {"host": "local", "stack": "dev"}
PROD = {"host": "qnap", "stack": "prod"}


def _sel(metric: str, **labels: str) -> str:
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inside}}}"


def target(job: str, instance: str, service: str | None = None, where=DEV) -> dict[str, str]:
    """The labels Prometheus gives a scraped series of `job`."""
    return {"job": job, "instance": instance, "service": service or job, **where}


GITEA = target("gitea", "gitea-1:3000")
GITEA_PROBE = {
    **target("probe", "http://gitea-1:3000/api/healthz", "gitea"),
    "probe": "http",
}
GIT_SITE = {
    "job": "probe-public",
    "instance": "https://git.nap-dms.localhost/",
    "service": "gitea",
    "stack": "dev",
}
NODE = target("node-exporter", "node-exporter-1:9100")
CONTAINER = {**target("cadvisor", "cadvisor-1:8080"), "id": "/docker/0a1b", "name": "gitea"}
AGENT = target("backup-agent", "backup-agent-1:9102")
AGENT_PG = {**AGENT, "service": "postgres"}
ALERTMANAGER = target("alertmanager", "alertmanager-1:9093")
PROMETHEUS = target("prometheus", "prometheus-1:9090")
LOKI = target("loki", "loki-1:3100")
PROXY = target("proxy", "proxy-1:2020")
DISK = {**NODE, "device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"}
PROD_SITE = {
    "job": "probe-public",
    "instance": "https://dms.nap-dms.example.org/",
    "service": "napdms-frontend",
    "stack": "prod",
}
DAY_STEP = 600
"""Step of the cases that span a day (promtool evaluates every step)."""


def fired(alert: str, severity: str, series: dict[str, str], **extra: str) -> dict[str, str]:
    """The labels of `alert` firing for `series`: the series' own, the rule's, its name."""
    return {**series, **extra, "alertname": alert, "severity": severity}


CASES = {
    # -- every service --------------------------------------------------------------------
    "service down pages after two more failed scrapes": (
        "dev",
        Case(
            "ServiceDown",
            {_sel("up", **GITEA): "1 1 0x10"},
            "30s",
            [fired("ServiceDown", "critical", GITEA)],
        ),
    ),
    "one failed scrape pages no one": (
        "dev",
        Case("ServiceDown", {_sel("up", **GITEA): "1 1 0 1x10"}, "30s"),
    ),
    "a service without a scrape target is noticed": (
        "dev",
        Case(
            "ServiceNotScraped",
            {
                _sel("up", **target(name, f"{name}-1:1")): "1x100"
                for name, spec in read_stack("dev").services.items()
                if spec.metrics is not None and name != "gitea"
            },
            "6m",
            [fired("ServiceNotScraped", "warning", {"job": "gitea", "service": "gitea"})],
        ),
    ),
    "a service restarting three times in 15 minutes warns": (
        "dev",
        Case(
            "ServiceRestarting",
            {_sel("process_start_time_seconds", **GITEA): "100x10 200x10 300x10 400x10"},
            "3m30s",
            [fired("ServiceRestarting", "warning", GITEA)],
        ),
    ),
    "a failing health probe pages": (
        "dev",
        Case(
            "ProbeFailing",
            {_sel("probe_success", **GITEA_PROBE): "1 1 0x10"},
            "30s",
            [fired("ProbeFailing", "critical", GITEA_PROBE)],
        ),
    ),
    "one failed probe pages no one": (
        "dev",
        Case("ProbeFailing", {_sel("probe_success", **GITEA_PROBE): "1 0 1x10"}, "30s"),
    ),
    "a public site failing through the proxy pages": (
        "dev",
        Case(
            "PublicSiteDown",
            {_sel("probe_success", **GIT_SITE): "1 1 0x10"},
            "30s",
            [fired("PublicSiteDown", "critical", GIT_SITE)],
        ),
    ),
    "a public site answering in over 2 s on average warns": (
        "dev",
        Case(
            "PublicSiteSlow",
            {_sel("probe_duration_seconds", **GIT_SITE): "2.5x100"},
            "6m",
            [fired("PublicSiteSlow", "warning", GIT_SITE)],
        ),
    ),
    "a public site failing for an hour burns the error budget on every window": (
        "dev",
        Case(
            "ErrorBudgetBurn",
            {_sel("probe_success", **GIT_SITE): "1x2 0x140"},
            "70m",
            [
                fired("ErrorBudgetBurn", "critical", GIT_SITE, window="1h"),
                fired("ErrorBudgetBurn", "critical", GIT_SITE, window="6h"),
                fired("ErrorBudgetBurn", "warning", GIT_SITE, window="1d"),
                fired("ErrorBudgetBurn", "warning", GIT_SITE, window="3d"),
            ],
            30,
        ),
    ),
    # With one hour of history a single failure is 0.14 % of it, over the 0.1 % budget: only the
    # slowest window (a ticket, not a page) may notice it.
    "one failed probe in an hour pages no one": (
        "dev",
        Case(
            "ErrorBudgetBurn",
            {_sel("probe_success", **GIT_SITE): "1x700 0 1x20"},
            "61m",
            [fired("ErrorBudgetBurn", "warning", GIT_SITE, window="3d")],
        ),
    ),
    # -- hosts -----------------------------------------------------------------------------
    "a host that stops answering pages": (
        "dev",
        Case(
            "HostDown",
            {_sel("up", **NODE): "1 1 0x10"},
            "30s",
            [fired("HostDown", "critical", NODE)],
        ),
    ),
    "host CPU above 80 % for 10 minutes warns": (
        "dev",
        Case(
            "HostCpuHigh",
            {_sel("node_cpu_seconds_total", **NODE, cpu="0", mode="idle"): "0+0.5x400"},
            "20m",
            [fired("HostCpuHigh", "warning", {"host": "local"})],
        ),
    ),
    "host memory above 80 % for 10 minutes warns": (
        "dev",
        Case(
            "HostMemoryHigh",
            {
                _sel("node_memory_MemAvailable_bytes", **NODE): "100x200",
                _sel("node_memory_MemTotal_bytes", **NODE): "1000x200",
            },
            "11m",
            [fired("HostMemoryHigh", "warning", NODE)],
        ),
    ),
    "a disk above 80 % for 10 minutes warns": (
        "dev",
        Case(
            "HostDiskHigh",
            {
                _sel("node_filesystem_avail_bytes", **DISK): "10x200",
                _sel("node_filesystem_size_bytes", **DISK): "100x200",
            },
            "11m",
            [fired("HostDiskHigh", "warning", DISK)],
        ),
    ),
    "a tmpfs filling up is no disk": (
        "dev",
        Case(
            "HostDiskHigh",
            {
                _sel("node_filesystem_avail_bytes", **{**DISK, "fstype": "tmpfs"}): "10x200",
                _sel("node_filesystem_size_bytes", **{**DISK, "fstype": "tmpfs"}): "100x200",
            },
            "11m",
        ),
    ),
    "a disk full within 24 hours at this rate pages": (
        "dev",
        Case(
            "HostDiskFullIn24h",
            {_sel("node_filesystem_avail_bytes", **DISK): "100000-10x800"},
            "40m",
            [fired("HostDiskFullIn24h", "critical", DISK)],
        ),
    ),
    # -- drift (the textfile collector of the primary host's node-exporter) ------------------
    "a major drift no one accepted pages": (
        "dev",
        Case(
            "DriftMajor",
            {_sel("napdms_drift_major", **NODE): "1x20"},
            "1m",
            [fired("DriftMajor", "critical", NODE)],
        ),
    ),
    "a check with no major drift (or only accepted ones) pages no one": (
        "dev",
        Case("DriftMajor", {_sel("napdms_drift_major", **NODE): "0x20"}, "1m"),
    ),
    "no drift check for 26 hours warns": (
        "dev",
        Case(
            "DriftCheckMissing",
            {_sel("napdms_drift_last_check_timestamp_seconds", **NODE): "0x1700"},
            "27h",
            [fired("DriftCheckMissing", "warning", NODE)],
            DAY_STEP,
        ),
    ),
    "a drift check 25 hours old is not missing": (
        "dev",
        Case(
            "DriftCheckMissing",
            {_sel("napdms_drift_last_check_timestamp_seconds", **NODE): "0x1700"},
            "25h",
            interval_s=DAY_STEP,
        ),
    ),
    "a stack whose drift was never checked warns after 26 hours": (
        "dev",
        Case(
            "DriftNeverChecked",
            {_sel("up", **NODE): "1x1700"},
            "27h",
            [fired("DriftNeverChecked", "warning", {})],
            DAY_STEP,
        ),
    ),
    "a stack checked once is not unchecked": (
        "dev",
        Case(
            "DriftNeverChecked",
            {_sel("napdms_drift_last_check_timestamp_seconds", **NODE): "0x1700"},
            "27h",
            interval_s=DAY_STEP,
        ),
    ),
    # -- containers --------------------------------------------------------------------------
    "a container above 80 % of its memory limit warns": (
        "dev",
        Case(
            "ContainerMemoryHigh",
            {
                _sel("container_memory_working_set_bytes", **CONTAINER): "90x200",
                _sel("container_spec_memory_limit_bytes", **CONTAINER): "100x200",
            },
            "11m",
            [fired("ContainerMemoryHigh", "warning", CONTAINER)],
        ),
    ),
    "a container without a memory limit is not divided by zero": (
        "dev",
        Case(
            "ContainerMemoryHigh",
            {
                _sel("container_memory_working_set_bytes", **CONTAINER): "90x200",
                _sel("container_spec_memory_limit_bytes", **CONTAINER): "0x200",
            },
            "11m",
        ),
    ),
    "a container above 80 % of its CPU limit warns": (
        "dev",
        Case(
            "ContainerCpuHigh",
            {
                _sel("container_cpu_usage_seconds_total", **CONTAINER): "0+4.5x400",
                _sel("container_spec_cpu_quota", **CONTAINER): "100000x400",
                _sel("container_spec_cpu_period", **CONTAINER): "100000x400",
            },
            "20m",
            [fired("ContainerCpuHigh", "warning", CONTAINER)],
        ),
    ),
    "a container started three times in 15 minutes warns": (
        "dev",
        Case(
            "ContainerRestarting",
            {_sel("container_start_time_seconds", **CONTAINER): "100x10 200x10 300x10 400x10"},
            "3m30s",
            [fired("ContainerRestarting", "warning", CONTAINER)],
        ),
    ),
    # -- backups -----------------------------------------------------------------------------
    "no complete backup for 26 hours pages": (
        "dev",
        Case(
            "BackupMissing",
            {_sel("napdms_backup_last_success_timestamp_seconds", **AGENT): "0x1700"},
            "27h",
            [fired("BackupMissing", "critical", AGENT)],
            DAY_STEP,
        ),
    ),
    "a backup 25 hours old is not missing": (
        "dev",
        Case(
            "BackupMissing",
            {_sel("napdms_backup_last_success_timestamp_seconds", **AGENT): "0x1700"},
            "25h",
            interval_s=DAY_STEP,
        ),
    ),
    "an agent that never succeeded pages after 26 hours": (
        "dev",
        Case(
            "BackupNeverSucceeded",
            {_sel("up", **AGENT): "1x1700"},
            "27h",
            [fired("BackupNeverSucceeded", "critical", {})],
            DAY_STEP,
        ),
    ),
    "a failed run pages": (
        "dev",
        Case(
            "BackupFailed",
            {_sel("napdms_backup_last_run_success", **AGENT): "0x20"},
            "1m",
            [fired("BackupFailed", "critical", AGENT)],
        ),
    ),
    "a failed run pages with its reason": (
        "dev",
        Case(
            "BackupFailedReason",
            {_sel("napdms_backup_failure", **AGENT, reason="network"): "1x20"},
            "1m",
            [fired("BackupFailedReason", "critical", {**AGENT, "reason": "network"})],
        ),
    ),
    "a service left out of the run pages": (
        "dev",
        Case(
            "BackupServiceFailed",
            {_sel("napdms_backup_service_success", **AGENT_PG): "0x20"},
            "1m",
            [fired("BackupServiceFailed", "critical", AGENT_PG)],
        ),
    ),
    "a failed repository check pages": (
        "dev",
        Case(
            "BackupCheckFailed",
            {_sel("napdms_backup_check_success", **AGENT): "0x20"},
            "1m",
            [fired("BackupCheckFailed", "critical", AGENT)],
        ),
    ),
    "a failed offsite copy pages": (
        "dev",
        Case(
            "BackupOffsiteFailed",
            {_sel("napdms_backup_offsite_success", **AGENT): "0x20"},
            "1m",
            [fired("BackupOffsiteFailed", "critical", AGENT)],
        ),
    ),
    "unreadable manifests warn": (
        "dev",
        Case(
            "BackupManifestUnreadable",
            {_sel("napdms_backup_manifest_unreadable", **AGENT): "2x20"},
            "1m",
            [fired("BackupManifestUnreadable", "warning", AGENT)],
        ),
    ),
    "a WAL archive ten minutes behind pages": (
        "dev",
        Case(
            "WalArchiveBehind",
            {_sel("napdms_backup_wal_archive_age_seconds", **AGENT_PG): "700x40"},
            "2m",
            [fired("WalArchiveBehind", "critical", AGENT_PG)],
        ),
    ),
    "a WAL archive a minute behind is normal": (
        "dev",
        Case(
            "WalArchiveBehind",
            {_sel("napdms_backup_wal_archive_age_seconds", **AGENT_PG): "60x40"},
            "2m",
        ),
    ),
    "failing WAL shipments warn": (
        "dev",
        Case(
            "WalArchiveFailing",
            {_sel("napdms_backup_wal_archive_failures_total", **AGENT_PG): "0x10 1x20"},
            "1m30s",
            [fired("WalArchiveFailing", "warning", AGENT_PG)],
        ),
    ),
    "a stopped WAL receiver warns": (
        "dev",
        Case(
            "WalReceiverDown",
            {_sel("napdms_backup_wal_receiver_up", **AGENT_PG): "0x60"},
            "3m",
            [fired("WalReceiverDown", "warning", AGENT_PG)],
        ),
    ),
    "lost WAL pages": (
        "dev",
        Case(
            "WalGap",
            {_sel("napdms_backup_wal_gaps_total", **AGENT_PG): "0x10 1x20"},
            "1m30s",
            [fired("WalGap", "critical", AGENT_PG)],
        ),
    ),
    "a base backup older than 26 hours warns": (
        "dev",
        Case(
            "BaseBackupMissing",
            {_sel("napdms_backup_pg_base_last_timestamp_seconds", **AGENT_PG): "0x1700"},
            "27h",
            [fired("BaseBackupMissing", "warning", AGENT_PG)],
            DAY_STEP,
        ),
    ),
    "failing restore points warn": (
        "dev",
        Case(
            "RestorePointFailing",
            {_sel("napdms_backup_pg_restore_point_failures_total", **AGENT_PG): "0x10 1x20"},
            "1m30s",
            [fired("RestorePointFailing", "warning", AGENT_PG)],
        ),
    ),
    # -- PostgreSQL ------------------------------------------------------------------------------
    "the agent unable to log in to PostgreSQL pages": (
        "dev",
        Case(
            "PostgresLoginFailing",
            {_sel("napdms_backup_pg_up", **AGENT_PG): "0x20"},
            "1m",
            [fired("PostgresLoginFailing", "critical", AGENT_PG)],
        ),
    ),
    "connections above 80 % of max_connections warn": (
        "dev",
        Case(
            "PostgresConnectionsNearLimit",
            {
                _sel("napdms_backup_pg_connections", **AGENT_PG): "85x100",
                _sel("napdms_backup_pg_max_connections", **AGENT_PG): "100x100",
            },
            "6m",
            [fired("PostgresConnectionsNearLimit", "warning", AGENT_PG)],
        ),
    ),
    "connections at 50 % are fine": (
        "dev",
        Case(
            "PostgresConnectionsNearLimit",
            {
                _sel("napdms_backup_pg_connections", **AGENT_PG): "50x100",
                _sel("napdms_backup_pg_max_connections", **AGENT_PG): "100x100",
            },
            "6m",
        ),
    ),
    # -- the proxy and its certificates --------------------------------------------------------
    "a certificate expiring within 14 days pages": (
        "prod",
        Case(
            "CertificateExpiringSoon",
            {_sel("probe_ssl_earliest_cert_expiry", **PROD_SITE): f"{10 * 86400}x20"},
            "1m",
            [fired("CertificateExpiringSoon", "critical", PROD_SITE)],
        ),
    ),
    "a certificate not renewed 25 days before expiry warns": (
        "prod",
        Case(
            "CertificateRenewalFailing",
            {_sel("probe_ssl_earliest_cert_expiry", **PROD_SITE): f"{20 * 86400}x20"},
            "1m",
            [fired("CertificateRenewalFailing", "warning", PROD_SITE)],
        ),
    ),
    "a certificate 30 days from expiry is fine": (
        "prod",
        Case(
            "CertificateRenewalFailing",
            {_sel("probe_ssl_earliest_cert_expiry", **PROD_SITE): f"{30 * 86400}x20"},
            "1m",
        ),
    ),
    "over 5 % server errors at the proxy pages": (
        "dev",
        Case(
            "HttpServerErrors",
            {
                _sel(
                    "caddy_http_request_duration_seconds_count",
                    **PROXY,
                    code="502",
                    site="git.nap-dms.localhost",
                ): "0+1x100",
                _sel(
                    "caddy_http_request_duration_seconds_count",
                    **PROXY,
                    code="200",
                    site="git.nap-dms.localhost",
                ): "0+1x100",
            },
            "5m",
            [fired("HttpServerErrors", "critical", {"site": "git.nap-dms.localhost"})],
        ),
    ),
    # -- the monitoring itself -------------------------------------------------------------------
    "the Watchdog always fires": (
        "dev",
        Case("Watchdog", {}, "1m", [fired("Watchdog", "none", {})]),
    ),
    "an integration failing to deliver pages": (
        "dev",
        Case(
            "NotificationsFailing",
            {
                _sel(
                    "alertmanager_notifications_failed_total", **ALERTMANAGER, integration="email"
                ): "0+1x40"
            },
            "2m",
            [fired("NotificationsFailing", "critical", {"integration": "email"})],
        ),
    ),
    "an Alertmanager configuration that failed to load pages": (
        "dev",
        Case(
            "AlertmanagerConfigReloadFailed",
            {_sel("alertmanager_config_last_reload_successful", **ALERTMANAGER): "0x20"},
            "1m",
            [fired("AlertmanagerConfigReloadFailed", "critical", ALERTMANAGER)],
        ),
    ),
    "a Prometheus configuration that failed to load pages": (
        "dev",
        Case(
            "PrometheusConfigReloadFailed",
            {_sel("prometheus_config_last_reload_successful", **PROMETHEUS): "0x20"},
            "1m",
            [fired("PrometheusConfigReloadFailed", "critical", PROMETHEUS)],
        ),
    ),
    "rules failing to evaluate page": (
        "dev",
        Case(
            "PrometheusRuleFailures",
            {
                _sel(
                    "prometheus_rule_evaluation_failures_total", **PROMETHEUS, rule_group="x"
                ): "0x10 1x20"
            },
            "1m30s",
            [fired("PrometheusRuleFailures", "critical", {**PROMETHEUS, "rule_group": "x"})],
        ),
    ),
    "alerts dropped on their way to Alertmanager page": (
        "dev",
        Case(
            "PrometheusNotificationsDropped",
            {_sel("prometheus_notifications_dropped_total", **PROMETHEUS): "0x10 1x20"},
            "1m30s",
            [fired("PrometheusNotificationsDropped", "critical", PROMETHEUS)],
        ),
    ),
    "no log line for 10 minutes warns": (
        "dev",
        Case(
            "LogsNotArriving",
            {_sel("loki_distributor_lines_received_total", **LOKI): "100x300"},
            "21m",
            [fired("LogsNotArriving", "warning", {})],
        ),
    ),
    "logs arriving are fine": (
        "dev",
        Case(
            "LogsNotArriving",
            {_sel("loki_distributor_lines_received_total", **LOKI): "100+5x300"},
            "21m",
        ),
    ),
}

WATCHER_CASES = {
    "the watcher pages when the Watchdog stops arriving": Case(
        "MonitoringSilent",
        {_sel("up", job="primary"): "1x20"},
        "2m",
        [fired("MonitoringSilent", "critical", {"service": "prometheus", "host": "local"})],
        15,
    ),
    "the watcher is quiet while the Watchdog arrives": Case(
        "MonitoringSilent",
        {_sel("ALERTS", alertname="Watchdog", alertstate="firing", severity="none"): "1x20"},
        "2m",
        interval_s=15,
    ),
    "the watcher pages when the primary's Alertmanager is down": Case(
        "AlertmanagerUnreachable",
        {_sel("up", **ALERTMANAGER): "0x20"},
        "2m",
        [
            fired(
                "AlertmanagerUnreachable",
                "critical",
                {**ALERTMANAGER, "service": "prometheus", "host": "local"},
            )
        ],
        15,
    ),
    "the watcher pages when the primary cannot deliver": Case(
        "NotificationsFailingOnPrimary",
        {
            _sel(
                "ALERTS", alertname="NotificationsFailing", alertstate="firing", integration="email"
            ): "1x20"
        },
        "1m",
        [
            fired(
                "NotificationsFailingOnPrimary",
                "critical",
                {"integration": "email", "service": "prometheus", "host": "local"},
            )
        ],
        15,
    ),
}


@pytest.mark.parametrize("stack,case", CASES.values(), ids=CASES.keys())
def test_alert_rule(stack, case, tmp_path):
    result = run(read_stack(stack), case, tmp_path)
    assert result.returncode == 0, f"{case.alert} ({stack}): {result.stdout}{result.stderr}"


@pytest.mark.parametrize("case", WATCHER_CASES.values(), ids=WATCHER_CASES.keys())
def test_watcher_rule(case, tmp_path):
    result = run(read_stack("dev"), case, tmp_path, service="watcher")
    assert result.returncode == 0, f"{case.alert} (watcher): {result.stdout}{result.stderr}"


def _alert_names(service: str, stack: str) -> set[str]:
    document = yaml.safe_load(generated_files(service, read_stack(stack).context)["rules.yml"])
    return {rule["alert"] for group in document["groups"] for rule in group["rules"]}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_generated_alert_has_a_firing_case(stack):
    tested = {case.alert for _, case in CASES.values() if case.expect}
    untested = _alert_names("prometheus", stack) - tested
    assert not untested, f"{stack}: alerts without a promtool case that fires them: {untested}"


def test_every_watcher_alert_has_a_firing_case():
    tested = {case.alert for case in WATCHER_CASES.values() if case.expect}
    untested = _alert_names("watcher", "dev") - tested
    assert not untested, f"watcher alerts without a promtool case that fires them: {untested}"
