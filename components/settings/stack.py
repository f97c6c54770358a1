"""`Stack`: one stack's settings resolved once, the object every reader takes.

The program, `napdms-ops images`, the backup commands and the tests all read a stack through
this: its catalog entries with overrides merged and validated, where each runs, the secrets they
read, and what the catalog's config renderers see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from components.catalog import generated_files
from components.model.context import CatalogContext
from components.model.release import COLOURS
from components.model.spec import INIT_WAIVERS, ServiceSpec
from components.settings.loader import load_settings, read_stack_file
from components.settings.model import PlatformSettings
from policies.rules.names import object_prefix


@dataclass(frozen=True)
class Stack:
    """A validated stack: its name, its settings and the catalog resolved for it."""

    name: str
    settings: PlatformSettings

    @property
    def services(self) -> Mapping[str, ServiceSpec]:
        """The enabled services, overrides merged and validated, in catalog order."""
        return self.settings.specs

    @property
    def placements(self) -> Mapping[str, tuple[str, ...]]:
        """Host names that run each enabled service."""
        return self.settings.placements

    @cached_property
    def secret_names(self) -> tuple[str, ...]:
        """Every platform secret the enabled services read, in catalog order."""
        return tuple(self.settings.secret_names())

    @cached_property
    def context(self) -> CatalogContext:
        """What the catalog's config renderers may read for this stack."""
        return CatalogContext(
            stack=self.name,
            domain=self.settings.domain,
            tls_mode=self.settings.tls.mode,
            acme_email=self.settings.tls.acme_email,
            services=self.services,
            backup=self.settings.backup,
            environment=self.settings.environment,
            placements=self.placements,
            addresses={name: host.bind_address for name, host in self.settings.hosts.items()},
            alerting=self.settings.alerting,
            acme_ca=self.settings.tls.acme_ca,
            acme_ca_root=self.settings.tls.acme_ca_root,
        )

    @property
    def name_prefix(self) -> str:
        """Prefix of every Docker object name of the stack, so stacks sharing a daemon never
        collide."""
        return object_prefix(self.name)

    def has_init(self, service: str) -> bool:
        """Whether the service gets a one-shot init container: it has secret or generated
        files to write, or volumes to hand to its user."""
        return self.services[service].needs_init(generated_files(service, self.context))

    @cached_property
    def grants(self) -> dict[str, dict[str, str]]:
        """Every exemption the stack grants, by container name (replicas share their service's):
        what `policies/config/<stack>.json` must hold."""
        table: dict[str, dict[str, str]] = {}
        for service, spec in self.services.items():
            # A coloured replica `<service>-<colour>-<n>` shares its colour's grant.
            bases = [f"{service}-{c}" for c in COLOURS] if spec.colours else [service]
            if waived := spec.waivers():
                table.update({f"{self.name_prefix}-{base}": dict(waived) for base in bases})
            if self.has_init(service):
                # A coloured service has an init container per colour (`<service>-<colour>-init`).
                table.update(
                    {f"{self.name_prefix}-{base}-init": dict(INIT_WAIVERS) for base in bases}
                )
        return table

    def start_order(self) -> list[str]:
        """The enabled services in the order they are declared and deployed: dependencies
        first; readers of other services' volumes last; otherwise catalog order."""
        specs = self.services
        graph = {name: [d for d in spec.depends_on if d in specs] for name, spec in specs.items()}
        readers = [name for name, spec in specs.items() if spec.reads_backed_up_volumes]
        for reader in readers:
            graph[reader] += [name for name in specs if name not in readers]
        sorter = TopologicalSorter(graph)
        sorter.prepare()
        rank = {name: index for index, name in enumerate(specs)}
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=rank.__getitem__)
            order += ready
            sorter.done(*ready)
        return order

    def endpoint_of(self, service: str) -> str | None:
        """The Docker endpoint of the host running `service`; None means DOCKER_HOST or the
        local socket."""
        return self.settings.hosts[self.placements[service][0]].docker_host


def load_stack(stack: str, values: Mapping[str, Any], secret_keys: set[str]) -> Stack:
    """Validate `stack`'s config values and resolve it; raises `SettingsError` naming stack, key
    and fix."""
    return Stack(stack, load_settings(stack, values, secret_keys))


def read_stack(stack: str, project_dir: Path | None = None) -> Stack:
    """`stack` as its `Pulumi.<stack>.yaml` declares it (no engine, no passphrase needed)."""
    values, secret_keys = read_stack_file(stack, project_dir)
    return load_stack(stack, values, secret_keys)
