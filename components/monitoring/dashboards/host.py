"""Hosts (node-exporter): CPU, memory, disk and how soon each filesystem fills, per host."""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import StackView, prom, row, timeseries

TITLE = "Hosts"
_NODE = 'job="node-exporter"'
_FILESYSTEMS = f'{_NODE}, fstype!~"tmpfs|overlay|squashfs|ramfs"'
_WEEK_S = 7 * 24 * 3600


def panels(context: StackView) -> list[core.Panel]:
    """Usage per host, then the filesystems' fill level and its one-week prediction."""
    del context  # every host's node-exporter is one job
    return [
        row("Usage per host"),
        timeseries(
            "CPU busy",
            [
                prom(
                    f'1 - avg by (host) (rate(node_cpu_seconds_total{{{_NODE}, mode="idle"}}'
                    "[$__rate_interval]))",
                    "{{host}}",
                )
            ],
            unit="percentunit",
        ),
        timeseries(
            "Memory used",
            [
                prom(
                    f"1 - node_memory_MemAvailable_bytes{{{_NODE}}} "
                    f"/ node_memory_MemTotal_bytes{{{_NODE}}}",
                    "{{host}}",
                )
            ],
            unit="percentunit",
        ),
        timeseries(
            "Disk busy",
            [
                prom(
                    f"rate(node_disk_io_time_seconds_total{{{_NODE}}}[$__rate_interval])",
                    "{{host}} {{device}}",
                )
            ],
            unit="percentunit",
        ),
        row("Filesystems"),
        timeseries(
            "Filesystem used",
            [
                prom(
                    f"1 - node_filesystem_avail_bytes{{{_FILESYSTEMS}}} "
                    f"/ node_filesystem_size_bytes{{{_FILESYSTEMS}}}",
                    "{{host}} {{mountpoint}}",
                )
            ],
            unit="percentunit",
            width=12,
        ),
        timeseries(
            "Free space in a week (linear prediction from the last 6h)",
            [
                prom(
                    f"predict_linear(node_filesystem_avail_bytes{{{_FILESYSTEMS}}}[6h], {_WEEK_S})",
                    "{{host}} {{mountpoint}}",
                )
            ],
            unit="bytes",
            width=12,
        ),
    ]
