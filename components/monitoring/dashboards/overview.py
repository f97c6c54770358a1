"""The Overview dashboard: the firing alerts, then one row per enabled service with what the
catalog says can be watched of it (scrape, probe, public URL, restarts)."""

from __future__ import annotations

from grafanalib import core

from components.model.spec import ServiceSpec
from components.monitoring.dashboards.board import (
    StackView,
    alarm_count,
    note,
    prom,
    row,
    table,
    timeseries,
    up_down,
)

TITLE = "Overview"


def panels(context: StackView) -> list[core.Panel]:
    """The alerts table, then each enabled service's row, by name."""
    found = [
        row("Alerts"),
        table("Firing alerts", [prom('ALERTS{alertstate="firing"}', table=True)]),
    ]
    for name in sorted(context.services):
        found += [row(name), *_service(context.services[name])]
    return found


def _service(spec: ServiceSpec) -> list[core.Panel]:
    name = spec.name
    probed = f'job="probe", service="{name}"'
    public = f'job="probe-public", service="{name}"'
    status = []
    if spec.metrics:
        status.append(prom(f'min(up{{job="{name}"}})', "scrape"))
    if spec.probe:
        status.append(prom(f"min(probe_success{{{probed}}})", f"{spec.probe.kind} probe"))
    if spec.public:
        status.append(prom(f"min(probe_success{{{public}}})", "public URL"))
    found: list[core.Panel] = [up_down(f"{name} status", status)] if status else []
    found.append(
        alarm_count(
            f"{name} firing alerts",
            [prom(f'count(ALERTS{{alertstate="firing", service="{name}"}}) or vector(0)')],
        )
    )
    latency = []
    if spec.probe:
        latency.append(prom(f"probe_duration_seconds{{{probed}}}", "probe {{host}}"))
    if spec.public:
        latency.append(prom(f"probe_duration_seconds{{{public}}}", "{{instance}}"))
    if latency:
        found.append(timeseries(f"{name} response time", latency, unit="s"))
    if spec.public:
        found.append(
            timeseries(
                f"{name} public URL availability",
                [prom(f"avg_over_time(probe_success{{{public}}}[1h])", "{{instance}}")],
                unit="percentunit",
                width=4,
            )
        )
    if spec.metrics:
        found.append(
            timeseries(
                f"{name} restarts (1h)",
                [
                    prom(
                        f'changes(process_start_time_seconds{{job="{name}"}}[1h])',
                        "{{instance}}",
                    )
                ],
                width=4,
            )
        )
    if not status:
        found.append(
            note(
                f"{name}: not watched",
                f"`{name}` declares no metrics, probe or public route in the catalog: only "
                "its alerts show here.",
            )
        )
    return found
