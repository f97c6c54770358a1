"""What a catalog module may read when it renders its config files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from components.model.alerting import AlertingSettings
from components.model.backup import BackupSettings
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
        """DNS names of each replica of `service` on the platform networks."""
        spec = self.services[service]
        return [f"{service}-{i}" for i in range(1, spec.replicas + 1)]
