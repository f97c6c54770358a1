"""A host (node-exporter): down, CPU, memory and disk above 80 %, a disk full within 24 h; and
the drift checks, whose metrics the primary host's exporter serves from its textfile collector
(`napdms_ops/drift/report.py`)."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring import timing
from components.monitoring.alert import Alert

HIGH = 0.8
"""The spec's threshold for CPU, memory and disk use."""
DRIFT_CHECK_MISSING_H = 26
"""A daily drift check (cron) may be late by two hours before its absence warns."""
# Filesystems that hold data: not the kernel's and container runtimes' own.
_DISKS = (
    'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|proc|sysfs|cgroup2?|devtmpfs",mountpoint!~"/run.*"'
)


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts on every host the exporter runs on, labelled by `host`."""
    jobs = "|".join(services)
    node = f'job=~"{jobs}"'
    return [
        Alert(
            "HostDown",
            f"up{{{node}}} == 0",
            "critical",
            "host {{ $labels.host }} does not answer ({{ $labels.instance }})",
            "check the NAS is powered and on the network; its services' alerts are held back",
            for_=timing.seconds(timing.CRITICAL_FOR_S),
        ),
        Alert(
            "HostCpuHigh",
            f'1 - avg by (host) (rate(node_cpu_seconds_total{{{node},mode="idle"}}[5m])) > {HIGH}',
            "warning",
            "host {{ $labels.host }} CPU at {{ $value | humanizePercentage }}",
            "find the busy container in the Containers dashboard; lower its cpus or move it",
            for_="10m",
        ),
        Alert(
            "HostMemoryHigh",
            f"1 - node_memory_MemAvailable_bytes{{{node}}} / node_memory_MemTotal_bytes{{{node}}}"
            f" > {HIGH}",
            "warning",
            "host {{ $labels.host }} memory at {{ $value | humanizePercentage }}",
            "find the largest container in the Containers dashboard; lower its memory limit",
            for_="10m",
        ),
        Alert(
            "HostDiskHigh",
            f"1 - node_filesystem_avail_bytes{{{node},{_DISKS}}}"
            f" / node_filesystem_size_bytes{{{node},{_DISKS}}} > {HIGH}",
            "warning",
            "host {{ $labels.host }} {{ $labels.mountpoint }} at {{ $value | humanizePercentage }}",
            "docker system df; prune old images; grow the volume",
            for_="10m",
        ),
        Alert(
            "HostDiskFullIn24h",
            f"predict_linear(node_filesystem_avail_bytes{{{node},{_DISKS}}}[6h], 24 * 3600) < 0",
            "critical",
            "host {{ $labels.host }} {{ $labels.mountpoint }} fills up within 24 h at this rate",
            "find what grows (logs, WAL spool, Prometheus data) before it stops the databases",
            for_="30m",
        ),
        *_drift_alerts(node),
    ]


def _drift_alerts(node: str) -> list[Alert]:
    late = f"{DRIFT_CHECK_MISSING_H} * 3600"
    return [
        Alert(
            "DriftMajor",
            f"napdms_drift_major{{{node}}} == 1",
            "critical",
            "stack {{ $labels.stack }}: the last drift check found a major drift no one accepted",
            "napdms-ops drift --stack <stack> lists it; `pulumi up` puts it back, or "
            'napdms-ops drift accept --stack <stack> --reason "..." records why it stays',
        ),
        Alert(
            "DriftCheckMissing",
            f"time() - napdms_drift_last_check_timestamp_seconds{{{node}}} > {late}",
            "warning",
            "stack {{ $labels.stack }}: no drift check for {{ $value | humanizeDuration }}",
            "check the cron job running napdms-ops drift --stack <stack>, and run it",
        ),
        Alert(
            "DriftNeverChecked",
            f"absent(napdms_drift_last_check_timestamp_seconds{{{node}}})",
            "warning",
            "no drift check has reported since the monitoring started",
            "schedule napdms-ops drift --stack <stack> daily (cron), and run it once now",
            for_=f"{DRIFT_CHECK_MISSING_H}h",
        ),
    ]
