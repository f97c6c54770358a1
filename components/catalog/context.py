"""What a catalog module may read when it renders its config files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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

    def replica_names(self, service: str) -> list[str]:
        """DNS names of each replica of `service` on the platform networks."""
        spec = self.services[service]
        return [f"{service}-{i}" for i in range(1, spec.replicas + 1)]
