"""What a catalog module may read when it renders its config files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from components.model.alerting import AlertingSettings
from components.model.backup import BackupSettings
from components.model.release import COLOURS, Colour
from components.model.spec import ServiceSpec


@dataclass(frozen=True)
class CatalogContext:
    """The stack-resolved view a `files()` renderer gets: no Pulumi objects, just data."""

    stack: str
    domain: str
    tls_mode: str
    acme_email: str | None
    services: Mapping[str, ServiceSpec]
    """The enabled services of the stack, with stack overrides applied."""
    backup: BackupSettings
    """Where, when and how long the backup agent keeps its snapshots."""
    environment: str = "dev"
    """The stack's rule set: dev, staging or prod."""
    placements: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Host names that run each enabled service."""
    addresses: Mapping[str, str] = field(default_factory=dict)
    """Each host's LAN address (`bind_address`), where its published ports are reached."""
    alerting: AlertingSettings | None = None
    """Where alerts are delivered."""
    acme_ca: str | None = None
    """The stack's own ACME directory URL (`tls.acme_ca`), instead of Let's Encrypt's."""
    acme_ca_root: str | None = None
    """PEM of the CA that signs that ACME server's TLS certificate (`tls.acme_ca_root`)."""

    def replica_names(self, service: str) -> list[str]:
        """DNS names of each replica of `service` on the platform networks: both colours' of a
        coloured service (what monitoring watches)."""
        spec = self.services[service]
        if spec.colours is None:
            return [f"{service}-{i}" for i in range(1, spec.replicas + 1)]
        return [name for colour in COLOURS for name in self.colour_replica_names(service, colour)]

    def live_replica_names(self, service: str) -> list[str]:
        """DNS names of the replicas that serve requests: the live colour's of a coloured
        service, every replica of another (where the proxy routes)."""
        colours = self.services[service].colours
        if colours is None:
            return self.replica_names(service)
        return self.colour_replica_names(service, colours.live)

    def colour_replica_names(self, service: str, colour: Colour) -> list[str]:
        """DNS names of `colour`'s replicas of a coloured `service` (`<service>-<colour>-<n>`)."""
        spec = self.services[service]
        if spec.colours is None:
            raise ValueError(f"{service} is not stateless and has no colour {colour}")
        return [f"{service}-{colour}-{i}" for i in range(1, spec.replicas + 1)]
