"""`Platform`: wires the catalog, resolved by the stack's settings, into hosts and services."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi

from components.catalog import generated_files
from components.hardened_service import HardenedService, HardenedServiceArgs, SourceVolume
from components.hosts import DockerHost
from components.model.release import COLOURS, Colour
from components.model.spec import ServiceSpec, previous_of, source_path
from components.monitoring.targets import public_names
from components.secrets import generated_secrets, operator_secrets
from components.settings.stack import Stack
from policies.rules.names import SEGMENTS


class Platform(pulumi.ComponentResource):
    """The whole NAP-DMS platform of one stack."""

    hosts: dict[str, DockerHost]
    """Each Docker daemon of the stack, by host name."""
    services: dict[str, dict[str, HardenedService]]
    """service name -> host name -> the service's resources on that host."""
    secrets: dict[str, pulumi.Output[str]]
    """Every platform secret the services read, by name: generated, or from encrypted config."""
    _previous: dict[str, pulumi.Output[str]]
    """The previous value of each generated secret a blue-green service reads, by name."""
    urls: pulumi.Output[dict[str, str]]
    """Public URL of each service the proxy serves."""
    admin_password: pulumi.Output[str]
    """Grafana's admin password (secret), for the operator's first login."""

    def __init__(self, name: str, stack: Stack, opts: pulumi.ResourceOptions | None = None):
        # Read before anything is registered: a missing key stops the program with nothing
        # half-declared.
        supplied = operator_secrets(stack.name, stack.secret_names)
        super().__init__("napdms:platform:Platform", name, None, opts)
        self._stack = stack
        self._child = pulumi.ResourceOptions(parent=self)
        settings = stack.settings

        self.hosts = {
            host: DockerHost(
                host,
                settings.hosts[host],
                _segments_on(host, stack),
                stack.name_prefix,
                opts=self._child,
            )
            for host in settings.hosts
        }
        # A blue-green service's colour may be pinned at a secret's previous value during its
        # rotation, so the program keeps the previous value of every secret such a service reads.
        coloured = {
            use.secret for spec in stack.services.values() if spec.colours for use in spec.secrets
        }
        generated = generated_secrets(
            [secret for secret in stack.secret_names if secret not in supplied],
            settings.secrets.rotation,
            self._child,
            keep_previous=coloured - supplied.keys(),
        )
        self.secrets = {
            secret: supplied[secret] if secret in supplied else generated[secret]
            for secret in stack.secret_names
        }
        self._previous = {
            secret: generated[previous_of(secret)]
            for secret in coloured
            if previous_of(secret) in generated
        }
        self.services = {}
        for service in stack.start_order():
            self.services[service] = {
                host: self._service(service, host) for host in stack.placements[service]
            }

        self.urls = pulumi.Output.from_input(
            {
                service: f"https://{spec.public.subdomain}.{settings.domain}"
                for service, spec in stack.services.items()
                if spec.public
            }
        )
        self.admin_password = self.secrets.get("grafana-admin-password", pulumi.Output.secret(""))
        self.register_outputs({"urls": self.urls, "admin_password": self.admin_password})

    def _service(self, service: str, host: str) -> HardenedService:
        """`service` on `host`, after the services it depends on there."""
        stack, settings = self._stack, self._stack.settings
        spec, docker_host = stack.services[service], self.hosts[host]
        placeholders = {"{domain}": settings.domain, "{stack}": stack.name}
        return HardenedService(
            f"{host}-{service}",
            HardenedServiceArgs(
                spec=spec,
                stack=stack.name,
                host=host,
                name_prefix=stack.name_prefix,
                provider=docker_host.provider,
                networks=docker_host.networks,
                bind_address=settings.hosts[host].bind_address,
                docker_host=settings.hosts[host].docker_host,
                init_image=docker_host.init_image,
                env={key: _substitute(value, placeholders) for key, value in spec.env.items()},
                secrets={use.secret: self.secrets[use.secret] for use in spec.secrets},
                colour_secrets=self._colour_secrets(spec),
                files=generated_files(service, stack.context),
                # The prober resolves each public site to the proxy inside, as DNS does outside.
                aliases=public_names(stack.context) if "proxy" in spec.monitors else (),
                protect_data=settings.environment != "dev",
                sources=self._sources(host, spec, stack.services)
                if spec.reads_backed_up_volumes
                else (),
                depends_on=[
                    container
                    for dependency in spec.depends_on
                    if host in self.services.get(dependency, {})
                    for container in self.services[dependency][host].containers
                ],
            ),
            opts=self._child,
        )

    def _colour_secrets(self, spec: ServiceSpec) -> dict[Colour, dict[str, pulumi.Output[str]]]:
        """The secret values each colour of a blue-green `spec` holds: a secret the colour is
        pinned at (`colours.<colour>.secrets`) its previous value, the others the current one."""
        if spec.colours is None:
            return {}
        return {
            colour: {
                use.secret: self._previous[use.secret]
                if use.secret in spec.colours.image(colour).secrets
                else self.secrets[use.secret]
                for use in spec.secrets
            }
            for colour in COLOURS
        }

    def _sources(
        self, host: str, reader: ServiceSpec, specs: Mapping[str, ServiceSpec]
    ) -> list[SourceVolume]:
        """Every daily-backed-up volume already declared on `host`, at /source/<service>/<volume>,
        except those of services backed up by a dump: a running database's files are no
        consistent backup, so the agent never sees them."""
        return [
            SourceVolume(
                volume=declared.volumes[volume.name], path=source_path(service, volume.name)
            )
            for service, by_host in self.services.items()
            if service != reader.name and host in by_host and not specs[service].backup_hook
            for declared in [by_host[host]]
            for volume in specs[service].daily_volumes
        ]


def _segments_on(host: str, stack: Stack) -> list[str]:
    used = {
        segment
        for name, spec in stack.services.items()
        if host in stack.placements[name]
        for segment in spec.networks
    }
    return [segment for segment in SEGMENTS if segment in used]


def _substitute(value: str, placeholders: dict[str, str]) -> str:
    for placeholder, replacement in placeholders.items():
        value = value.replace(placeholder, replacement)
    return value
