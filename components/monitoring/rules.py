"""Prometheus' alert rules for a stack: every service's own (down, probe failing, restarting,
public site down, slow or burning its error budget) and its kinds' (`kinds/`)."""

from __future__ import annotations

from dataclasses import replace

from components.model.context import CatalogContext
from components.model.spec import ServiceSpec
from components.monitoring import timing
from components.monitoring.alert import Alert, group
from components.monitoring.kinds import alerts_of
from components.monitoring.targets import PROBE_JOB, PUBLIC_JOB

CRITICAL_FOR = timing.seconds(timing.CRITICAL_FOR_S)
SLO = 0.999
"""The monthly availability objective of every public site (SC-009)."""
BURN_WINDOWS = (
    # (long window, short window, burn rate, severity): Google SRE workbook, chapter 5, table 5-8.
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
)
SLOW_S = 2
"""Average response time above which a public site is slow (SC-011)."""
RESTARTS = 3
"""Starts within 15 minutes that count as restarting repeatedly."""


def _service_alerts(context: CatalogContext, name: str, spec: ServiceSpec) -> list[Alert]:
    alerts: list[Alert] = []
    if spec.metrics is not None:
        alerts += [
            Alert(
                "ServiceDown",
                f'up{{job="{name}"}} == 0',
                "critical",
                "{{ $labels.service }} on {{ $labels.host }} does not answer "
                "({{ $labels.instance }})",
                f"docker ps -a --filter label=napdms.service={name}; read its logs and health",
                for_=CRITICAL_FOR,
            ),
            Alert(
                "ServiceNotScraped",
                f'absent(up{{job="{name}"}})',
                "warning",
                f"Prometheus has no target for {name}",
                "check Prometheus' generated prometheus.yml, then `pulumi up`",
                for_="5m",
            ),
            Alert(
                "ServiceRestarting",
                f'changes(process_start_time_seconds{{job="{name}"}}[15m]) >= {RESTARTS}',
                "warning",
                "{{ $labels.service }} on {{ $labels.host }} started {{ $value }} times in 15 min",
                "read the container's logs before the restarts: it is crashing and coming back",
            ),
        ]
    if spec.probe is not None:
        alerts.append(
            Alert(
                "ProbeFailing",
                f'probe_success{{job="{PROBE_JOB}",service="{name}"}} == 0',
                "critical",
                "{{ $labels.service }} on {{ $labels.host }} fails its "
                "{{ $labels.probe }} probe ({{ $labels.instance }})",
                "its health endpoint or port does not answer: read State.Health in "
                "`docker inspect` of the container",
                for_=CRITICAL_FOR,
            )
        )
    if spec.public is not None:
        alerts += _public_alerts(name)
    return alerts


def _public_alerts(name: str) -> list[Alert]:
    public = f'job="{PUBLIC_JOB}",service="{name}"'
    budget = 1 - SLO
    alerts = [
        Alert(
            "PublicSiteDown",
            f"probe_success{{{public}}} == 0",
            "critical",
            "{{ $labels.instance }} fails through the proxy",
            "check the proxy and the service behind it; `napdms-ops status` shows both",
            for_=CRITICAL_FOR,
        ),
        Alert(
            "PublicSiteSlow",
            f"avg_over_time(probe_duration_seconds{{{public}}}[5m]) > {SLOW_S}",
            "warning",
            "{{ $labels.instance }} answers in {{ $value | humanize }}s on average (over 2 s)",
            "look at the service's CPU and memory and the database behind it",
            for_="5m",
        ),
    ]
    for long, short, rate, severity in BURN_WINDOWS:
        threshold = f"{rate * budget:.4g}"
        alerts.append(
            Alert(
                "ErrorBudgetBurn",
                f"(1 - avg_over_time(probe_success{{{public}}}[{long}])) > {threshold}"
                f" and (1 - avg_over_time(probe_success{{{public}}}[{short}])) > {threshold}",
                severity,
                f"{{{{ $labels.instance }}}} fails {rate:g}x faster than the 99.9 % "
                f"monthly objective allows (over {long} and {short})",
                "the site fails intermittently: read the proxy's 5xx and the service's logs",
                labels=(("window", long),),
            )
        )
    return alerts


def _labelled(alert: Alert, service: str) -> Alert:
    # The rule's own service label keeps two services' rules apart (promtool refuses duplicates)
    # and names the service even where the series does not (absent()).
    labels = dict(alert.labels) | {"service": service}
    return replace(alert, labels=tuple(labels.items()))


def rule_groups(context: CatalogContext) -> list[dict]:
    """Every rule group of the stack: one per service, one per kind of service present."""
    groups = []
    for name, spec in context.services.items():
        if alerts := [_labelled(a, name) for a in _service_alerts(context, name, spec)]:
            groups.append(group(f"service:{name}", alerts))
    kinds: dict[str, list[str]] = {}
    for name, spec in context.services.items():
        for kind in spec.monitors:
            kinds.setdefault(kind, []).append(name)
    for kind in sorted(kinds):
        if alerts := alerts_of(kind, context, kinds[kind]):
            groups.append(group(f"kind:{kind}", alerts))
    return groups
