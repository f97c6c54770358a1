"""What Prometheus scrapes and the blackbox exporter probes, read off the catalog.

A target on the monitoring host is reached by its replica's network alias; one on another host
by that host's LAN address and the port the service publishes there (the ASUSTOR's
node-exporter). A service that cannot be reached either way is listed by `unreachable`, which a
test keeps empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.model.context import CatalogContext
from components.model.release import COLOURS
from components.model.spec import ServiceSpec

MONITOR = "prometheus"
"""The service whose host is the monitoring host."""
PROBE_JOB = "probe"
"""Job of the blackbox probes of each service's health endpoint or port."""
PUBLIC_JOB = "probe-public"
"""Job of the blackbox probes of each public URL, through the proxy as a browser reaches it."""


@dataclass(frozen=True)
class Target:
    """One address to scrape or probe, with the labels every alert and panel groups by."""

    address: str
    service: str
    host: str
    colour: str | None = None
    """Which colour of a blue-green service's replicas it is (both are watched: the idle one
    is the instant rollback)."""

    def labels(self, stack: str) -> dict[str, str]:
        """The target's labels in Prometheus: service, host and stack, and a coloured replica's
        colour."""
        labels = {"service": self.service, "host": self.host, "stack": stack}
        return labels | ({"colour": self.colour} if self.colour else {})


def monitoring_host(context: CatalogContext) -> str | None:
    """The host Prometheus runs on (None when the stack disables it)."""
    hosts = context.placements.get(MONITOR, ())
    return hosts[0] if hosts else None


def _addresses(
    context: CatalogContext, service: str, port: int, from_host: str | None
) -> list[Target]:
    spec = context.services[service]
    targets = []
    for host in context.placements.get(service, ()):
        if host == from_host:
            targets += [
                Target(f"{replica}:{port}", service, host, colour)
                for colour in (COLOURS if spec.colours else (None,))
                for replica in (
                    context.colour_replica_names(service, colour)
                    if colour
                    else context.replica_names(service)
                )
            ]
            continue
        published = next((p.external for p in spec.ports if p.internal == port), None)
        if published is not None:
            targets.append(Target(f"{context.addresses[host]}:{published}", service, host))
    return targets


def scrape_targets(
    context: CatalogContext, service: str, from_host: str | None = None
) -> list[Target]:
    """Where Prometheus (or a scraper on `from_host`) reads `service`'s own metrics, every
    replica on every host it reaches."""
    metrics = context.services[service].metrics
    if metrics is None:
        return []
    return _addresses(context, service, metrics.port, from_host or monitoring_host(context))


def probe_targets(context: CatalogContext, service: str) -> list[Target]:
    """What the blackbox exporter probes of `service`: its health URL or its port, per replica."""
    probe = context.services[service].probe
    if probe is None:
        return []
    targets = _addresses(context, service, probe.port, monitoring_host(context))
    if probe.kind == "http":
        return [
            Target(f"http://{t.address}{probe.path}", t.service, t.host, t.colour) for t in targets
        ]
    return targets


def public_url(context: CatalogContext, spec: ServiceSpec) -> str | None:
    """The https URL the proxy serves `spec` under, if it is public."""
    if spec.public is None:
        return None
    return f"https://{spec.public.subdomain}.{context.domain}/"


def public_names(context: CatalogContext) -> list[str]:
    """Every public host name of the stack: the proxy answers to them on the platform networks
    too, so the prober reaches each site through the proxy, TLS included, as users do."""
    return [
        f"{spec.public.subdomain}.{context.domain}"
        for spec in context.services.values()
        if spec.public is not None
    ]


def unreachable(context: CatalogContext) -> list[str]:
    """Services with metrics or a probe that the monitoring host cannot reach on some host."""
    here = monitoring_host(context)
    missing = []
    for name, spec in context.services.items():
        for port in [e.port for e in (spec.metrics, spec.probe) if e is not None]:
            for host in context.placements.get(name, ()):
                if host != here and not any(p.internal == port for p in spec.ports):
                    missing.append(f"{name} on {host} (port {port} is not published)")
    return sorted(set(missing))
