"""Containers (cAdvisor): CPU and memory above 80 % of their limits, and restarting containers.

Without the Docker socket (every stack but dev) cAdvisor knows containers by cgroup path only:
the alerts then name the `id`, not the service."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.monitoring.alert import Alert
from components.monitoring.kinds.host import HIGH


def alerts(context: CatalogContext, services: list[str]) -> list[Alert]:
    """Alerts per container with a limit (every container the program declares has one)."""
    job = f'job=~"{"|".join(services)}"'
    who = "{{ $labels.name }}{{ $labels.id }}"
    return [
        Alert(
            "ContainerMemoryHigh",
            f"container_memory_working_set_bytes{{{job}}}"
            f" / (container_spec_memory_limit_bytes{{{job}}} > 0) > {HIGH}",
            "warning",
            f"container {who} uses {{{{ $value | humanizePercentage }}}} of its memory limit",
            "raise the service's memory in the stack file, or find its leak",
            for_="10m",
        ),
        Alert(
            "ContainerCpuHigh",
            f"rate(container_cpu_usage_seconds_total{{{job}}}[5m])"
            # Older cAdvisors label the total cpu="total"; the limits have no such label.
            f" / ignoring(cpu) (container_spec_cpu_quota{{{job}}}"
            f" / container_spec_cpu_period{{{job}}})"
            f" > {HIGH}",
            "warning",
            f"container {who} uses {{{{ $value | humanizePercentage }}}} of its CPU limit",
            "raise the service's cpus in the stack file, or find what keeps it busy",
            for_="10m",
        ),
        Alert(
            "ContainerRestarting",
            f"changes(container_start_time_seconds{{{job}}}[15m]) >= 3",
            "warning",
            f"container {who} started {{{{ $value }}}} times in 15 min",
            "read its logs: it is crashing and Docker restarts it",
        ),
    ]
