"""Containers (cAdvisor): CPU and memory of each container against its limit.

cAdvisor names containers (label `name`) only where it reads the Docker socket (dev); the
cgroup path (`id`) is there everywhere, so it keys the series and `name` is shown when present.
"""

from __future__ import annotations

from grafanalib import core

from components.monitoring.dashboards.board import StackView, prom, row, timeseries

TITLE = "Containers"
_DOCKER = 'job="cadvisor", id=~"/docker/.+|/system.slice/docker-.+"'
_BY = "by (host, id, name)"
_LEGEND = "{{host}} {{name}} {{id}}"


def panels(context: StackView) -> list[core.Panel]:
    """Usage, and usage as a share of the limit, for CPU and memory."""
    del context  # cAdvisor reports every container of its host
    cpu = f"sum {_BY} (rate(container_cpu_usage_seconds_total{{{_DOCKER}}}[$__rate_interval]))"
    cpu_limit = (
        f"sum {_BY} (container_spec_cpu_quota{{{_DOCKER}}} "
        f"/ container_spec_cpu_period{{{_DOCKER}}})"
    )
    memory = f"sum {_BY} (container_memory_working_set_bytes{{{_DOCKER}}})"
    memory_limit = f"sum {_BY} (container_spec_memory_limit_bytes{{{_DOCKER}}} > 0)"
    return [
        row("CPU"),
        timeseries("CPU used (cores)", [prom(cpu, _LEGEND)], width=12),
        timeseries("CPU used / limit", [prom(f"{cpu} / {cpu_limit}", _LEGEND)], "percentunit", 12),
        row("Memory"),
        timeseries("Memory working set", [prom(memory, _LEGEND)], unit="bytes", width=12),
        timeseries(
            "Memory used / limit",
            [prom(f"{memory} / {memory_limit}", _LEGEND)],
            unit="percentunit",
            width=12,
        ),
    ]
