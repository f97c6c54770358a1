"""The whole platform's stack settings as one pydantic model tree.

Stack files say only what differs per stack: hosts, sizes, replicas, placement, versions,
domain, TLS, backup target and mail. Everything else comes from the catalog. Cross-field rules
(prod replicas, host memory, known secret names) live here so a wrong stack file fails before
any resource is registered.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import (
    Field,
    PrivateAttr,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from components.catalog import (
    CATALOG,
    alertmanager,
    backup_agent,
    log_shipper,
    prometheus,
    watcher_alertmanager,
)
from components.catalog.log_shipper import DEFAULT_DOCKER_ROOT
from components.model.addresses import (
    Email,
    docker_endpoint_problem,
    printable,
    quoted,
    ssh_options_problem,
)
from components.model.alerting import AlertingSettings
from components.model.backup import BackupSettings
from components.model.operator_keys import BY_SECRET
from components.model.release import COLOURS, Colours
from components.model.spec import (
    SECRETS_DIR,
    SOURCE_ROOT,
    BackupPolicy,
    Digest,
    ImageRepository,
    Pids,
    Replicas,
    ServiceSpec,
    Tag,
    is_previous,
    why_no_colours,
)
from components.model.strict import StrictModel
from components.model.units import Cpus, SizeMB, format_size_mb
from policies.rules.grants import UNWAIVABLE, WAIVABLE_STACKS

ServiceName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
"""A service the catalog knows; anything else is a typo."""

_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9-]{1,63}\.)+[a-z]{2,63}")


class HostSettings(StrictModel):
    """A Docker daemon: the QNAP, the ASUSTOR, or the local daemon in dev."""

    docker_host: str | None = None
    """`ssh://user@host` or `unix:///path`; unset means DOCKER_HOST or the local socket. `tcp://`
    is refused: this program gives the Docker API no TLS, and the bare API hands over the host."""
    ssh_opts: list[str] = []
    """Extra ssh options for an `ssh://` host (e.g. `[-o, ServerAliveInterval=15]`); none that
    weakens host-key checking or runs a command."""
    memory: SizeMB
    """Memory the platform may use on this host; the services' limits must fit in it."""
    cpus: Cpus
    bind_address: str = "127.0.0.1"
    """LAN address published ports bind to (never 0.0.0.0, except the proxy's 80/443)."""
    roles: list[Literal["primary", "backup"]] = Field(min_length=1)
    """`primary` runs the services, `backup` receives the backups; dev puts both on one host."""
    docker_root: str = DEFAULT_DOCKER_ROOT
    """The daemon's data root (`docker info --format '{{.DockerRootDir}}'`): the log shipper
    reads the containers' json-file logs under its `containers` folder. QNAP's Container Station
    keeps it on a data volume, not in /var/lib/docker."""

    @field_validator("docker_host")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        problem = docker_endpoint_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("ssh_opts")
    @classmethod
    def _ssh_opts(cls, value: list[str]) -> list[str]:
        problem = ssh_options_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("docker_root")
    @classmethod
    def _docker_root(cls, value: str) -> str:
        example = 'use the path `docker info --format "{{.DockerRootDir}}"` prints on the host'
        if not value.isprintable():
            raise ValueError(f"{quoted(value)} holds line breaks or control characters; {example}")
        if not value.startswith("/"):
            raise ValueError(f"{quoted(value)} is not an absolute path; {example}")
        if not value.strip("/"):
            raise ValueError(f"{quoted(value)} is the whole filesystem, not a data root; {example}")
        if posixpath.normpath(value) != value or value.startswith("//"):
            raise ValueError(
                f"{quoted(value)} is not a plain path (no .., . or repeated /); write it as "
                f"{quoted(posixpath.normpath(value).replace('//', '/'))}"
            )
        return value

    @field_validator("bind_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError(
                f'"{value}" is not an IP address; use the host\'s LAN address, e.g. "192.168.1.10"'
            ) from None
        if address.is_unspecified:
            raise ValueError(f'"{value}" binds every interface; use the host\'s LAN address')
        return value


class VolumeOverride(StrictModel):
    """A stack's change to one volume: only its backup policy may differ."""

    backup: BackupPolicy


class ServiceOverride(StrictModel):
    """What a stack may change about a catalog service."""

    enabled: StrictBool = True
    """true or false; text such as "no" is refused, not read as a boolean."""
    tag: Tag | None = None
    image: ImageRepository | None = None
    digest: Digest | None = None
    memory: SizeMB | None = None
    cpus: Cpus | None = None
    pids: Pids | None = None
    replicas: Replicas | None = None
    host: str | None = None
    """Host name (a key of `hosts`) to run on instead of the one its placement picks."""
    volumes: dict[str, VolumeOverride] = {}
    colours: Colours | None = None
    """A stateless service's live colour and each colour's image (`napdms-ops deploy` sets
    them); unset: blue is live and both colours run `tag`/`digest`."""

    def apply(self, spec: ServiceSpec) -> ServiceSpec:
        """`spec` with these changes, validated again as a whole: every rule of the catalog's
        model holds for the merged entry too. Raises pydantic's `ValidationError`."""
        changes = self.model_dump(
            mode="json", exclude_none=True, exclude={"enabled", "host", "volumes"}
        )
        entry = spec.model_dump(mode="json")
        for volume in entry["volumes"]:
            if volume["name"] in self.volumes:
                volume["backup"] = self.volumes[volume["name"]].backup.model_dump(mode="json")
        return ServiceSpec.model_validate({**entry, **changes})


class TlsSettings(StrictModel):
    """How the proxy gets certificates."""

    mode: Literal["acme", "internal"]
    """`acme`: Let's Encrypt (public DNS needed): its production CA in prod, its staging CA in
    the other stacks. `internal`: Caddy's local CA (dev)."""
    acme_email: Email | None = None
    """Where Let's Encrypt mails expiry warnings (written into the Caddyfile)."""
    acme_ca: str | None = None
    """Directory URL of another ACME server to use instead of Let's Encrypt (an https URL, e.g.
    a private ACME server: "https://acme.example.org/directory")."""
    acme_ca_root: str | None = None
    """PEM of the CA that signs that ACME server's own TLS certificate, when no public CA does
    (a private ACME server); the proxy trusts it for talking to the ACME server only."""

    @field_validator("acme_ca")
    @classmethod
    def _acme_ca(cls, value: str | None) -> str | None:
        if value is None:
            return value
        example = 'use e.g. "https://acme.example.org/directory"'
        if not value.isprintable() or any(char.isspace() for char in value):
            # The URL is one Caddyfile token: a line break or space would start a directive.
            raise ValueError(f"{quoted(value)} contains a space or control character; {example}")
        scheme, _, rest = value.partition("://")
        if scheme.lower() != "https":
            raise ValueError(
                f"{quoted(value)} is not an https URL: the ACME account key and certificate "
                f"orders would cross the network unprotected; {example}"
            )
        if "@" in rest.split("/", 1)[0]:
            raise ValueError(
                "the URL carries credentials (user:password@), which would be written into "
                "the Caddyfile in plain text; remove them (ACME authenticates by account key, "
                "or by acme_eab for servers that need it)"
            )
        host = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
        if not re.fullmatch(rf"https://{host}(:[0-9]{{1,5}})?(/[A-Za-z0-9._~%/-]*)?", value):
            raise ValueError(f"{quoted(value)} is not an ACME directory URL; {example}")
        return value

    @field_validator("acme_ca_root")
    @classmethod
    def _acme_ca_root(cls, value: str | None) -> str | None:
        if value is None:
            return value
        # Never quote the value back: a pasted private key must not end up in a log.
        if "PRIVATE KEY" in value:
            raise ValueError(
                "holds a private key (the value is not shown); give only the CA's certificate "
                "(-----BEGIN CERTIFICATE-----) and keep the key off the stack file"
            )
        body = re.fullmatch(
            r"\s*-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\s*",
            value,
        )
        # DER certificates start with a SEQUENCE tag, "MI" in base64.
        if body is None or not body[1].startswith("MI"):
            raise ValueError(
                "is not one PEM certificate; paste the CA certificate, from "
                "-----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----, as a YAML block (|)"
            )
        return value.strip() + "\n"

    @model_validator(mode="after")
    def _acme_needs_email(self) -> TlsSettings:
        if self.mode == "acme" and not self.acme_email:
            raise ValueError(
                'mode "acme" needs acme_email: Let\'s Encrypt mails expiry warnings there'
            )
        if self.mode == "internal" and (self.acme_ca or self.acme_ca_root):
            raise ValueError(
                'mode "internal" issues certificates from Caddy\'s local CA and never asks an '
                "ACME server; remove acme_ca and acme_ca_root, or set mode: acme"
            )
        if self.acme_ca_root and not self.acme_ca:
            raise ValueError(
                "acme_ca_root trusts a private ACME server, but acme_ca does not name one; set "
                "acme_ca to its directory URL, or remove acme_ca_root (Let's Encrypt needs none)"
            )
        return self


RotationCounter = Annotated[StrictInt, Field(ge=0, le=1_000_000)]
"""How often a secret has been rotated: a whole number that only goes up."""


MaxAgeDays = Annotated[StrictInt, Field(ge=1, le=3650)]
"""Days a secret may go unrotated before it is due: 1 to 3650 (ten years)."""

DEFAULT_MAX_AGE_DAYS = 90
"""A secret's maximum age when the stack names none for it."""


class SecretsSettings(StrictModel):
    """Rotation counters (raising a secret's number generates a new value on the next `up`) and
    how old each secret may grow before `napdms-ops secrets list` shows it due."""

    rotation: dict[str, RotationCounter] = {}
    max_age_days: dict[str, MaxAgeDays] = {}
    """Days each named secret (generated or operator-set) may go unrotated; the others 90."""

    def max_age(self, name: str) -> int:
        """Days secret `name` may go unrotated."""
        return self.max_age_days.get(name, DEFAULT_MAX_AGE_DAYS)


class PlatformSettings(StrictModel):
    """Everything a stack file may say. Parsed once, at the edge, by `load_settings`; validating
    it also resolves the catalog for the stack (`specs`, `placements`) once."""

    environment: Literal["dev", "staging", "prod"]
    """Which rule set applies (prod adds replica rules); stated in each stack file."""
    domain: str
    hosts: dict[str, HostSettings] = Field(min_length=1)
    services: dict[ServiceName, ServiceOverride] = {}
    tls: TlsSettings
    backup: BackupSettings
    alerting: AlertingSettings
    secrets: SecretsSettings = SecretsSettings()

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        if not _DOMAIN.fullmatch(value):
            raise ValueError(f'{quoted(value)} is not a DNS domain; use e.g. "nap-dms.example.org"')
        return value

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, value: dict[str, HostSettings]) -> dict[str, HostSettings]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", name):
                raise ValueError(
                    f"{quoted(name)} is not a host name; use lower-case letters, digits and -"
                )
        return value

    _services: dict[str, ServiceSpec] = PrivateAttr(default_factory=dict)
    _placements: dict[str, tuple[str, ...]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> PlatformSettings:
        roles, overrides = self._role_problems(), self._override_problems()
        # Resolved once, here; every rule below and every reader after reads the result.
        resolution = [] if overrides else self._resolve_services()
        problems = roles + overrides + resolution
        resolved = not overrides and not resolution
        placed = resolved and not roles
        if placed:
            self._placements.update({name: self._placement(name) for name in self._services})
            if prometheus.SPEC.name in self._services:
                self._services[prometheus.SPEC.name] = prometheus.for_placements(
                    self._services[prometheus.SPEC.name], self._placements
                )
        problems += self._replica_problems() if resolved else []
        problems += self._memory_problems() if placed else []
        problems += self._secret_problems() if resolved else []
        problems += self._pin_problems() if resolved else []
        problems += self.backup.known_hosts_problems()
        problems += self._backup_target_problems()
        problems += self._agent_problems() if placed else []
        if problems:
            # One problem per line: a value holding a line break cannot split or forge one.
            raise ValueError(_PROBLEMS_MARK + "\n".join(map(printable, problems)))
        return self

    # -- the resolved stack ------------------------------------------------------------------

    @property
    def specs(self) -> Mapping[str, ServiceSpec]:
        """Catalog entries with this stack's overrides merged and validated, disabled services
        left out, the backup agent fitted to this stack's backup target and databases."""
        return MappingProxyType(self._services)

    @property
    def placements(self) -> Mapping[str, tuple[str, ...]]:
        """Host names that run each enabled service."""
        return MappingProxyType(self._placements)

    def host_for_role(self, role: str) -> str:
        """The first host carrying `role` (validation guarantees there is one)."""
        return next(name for name, host in self.hosts.items() if role in host.roles)

    def secret_names(self) -> list[str]:
        """Every platform secret the enabled services read, in catalog order."""
        return list(
            dict.fromkeys(use.secret for spec in self._services.values() for use in spec.secrets)
        )

    def _resolve_services(self) -> list[str]:
        problems: list[str] = []
        for name, entry in CATALOG.items():
            override = self.services.get(name)
            if override is not None and not override.enabled:
                continue
            spec = entry.in_environment(self.environment)
            problems += [
                f"services.{name}.exemptions: {rule} can never be waived in {self.environment} "
                "(it hands the container the host); change the service so it no longer needs it, "
                'or limit the exemption to environments: ["dev"]'
                for rule in spec.waivers()
                if rule in UNWAIVABLE and self.environment not in WAIVABLE_STACKS
            ]
            try:
                resolved = override.apply(spec) if override else spec
            except ValidationError as error:
                problems += [
                    f"{'.'.join(['services', name, *map(str, detail['loc'])])}: "
                    f"{detail['msg'].removeprefix('Value error, ')}; change this stack's override"
                    for detail in error.errors()
                ]
                continue
            # Every stateless service behind the proxy runs both colours, blue live unless the
            # stack says otherwise.
            if resolved.blue_green and resolved.colours is None:
                resolved = resolved.model_copy(update={"colours": Colours()})
            self._services[name] = resolved
        agent = backup_agent.SPEC.name
        if agent in self._services and not problems:
            self._services[agent] = backup_agent.for_stack(
                self._services[agent], self.backup, self._services
            )
        # Each Alertmanager reads the stack's SMTP login and, when alerts go to chat, its
        # configuration as the template of the webhook URL.
        for module in (alertmanager, watcher_alertmanager):
            name = module.SPEC.name
            if name in self._services and not problems:
                routes = module.routes(self.alerting)
                text = alertmanager.rendered(self.alerting, self.domain, routes)
                self._services[name] = alertmanager.for_stack(
                    self._services[name], self.alerting, text
                )
        # The log shipper reads the json-file logs under its own host's Docker data root.
        shipper = log_shipper.SPEC.name
        if shipper in self._services and not problems and not self._role_problems():
            (host,) = self._placement(shipper)
            self._services[shipper] = log_shipper.for_host(
                self._services[shipper], self.hosts[host].docker_root
            )
        return problems

    def _placement(self, name: str) -> tuple[str, ...]:
        override = self.services.get(name)
        if override and override.host:
            return (override.host,)
        placement = CATALOG[name].placement
        if placement == "every-host":
            return tuple(self.hosts)
        return (self.host_for_role(placement),)

    # -- rules -----------------------------------------------------------------------------

    def _role_problems(self) -> list[str]:
        return [
            f'hosts: no host has role "{role}"; add roles: [{role}] to one host'
            for role in ("primary", "backup")
            if not any(role in host.roles for host in self.hosts.values())
        ]

    def _override_problems(self) -> list[str]:
        problems = []
        for name, override in self.services.items():
            if override.host and override.host not in self.hosts:
                problems.append(
                    f'services.{name}.host: "{override.host}" is not a host of this stack; '
                    f"use one of: {', '.join(self.hosts)}"
                )
            build = CATALOG[name].build
            for key in ("image", "digest"):
                if build and getattr(override, key) is not None:
                    problems.append(
                        f"services.{name}.{key}: {name} is built from {build.dockerfile} "
                        "at `pulumi up`, not pulled; remove the key"
                    )
            if override.colours is not None and not CATALOG[name].blue_green:
                problems.append(
                    f"services.{name}.colours: {name} "
                    f"{why_no_colours(CATALOG[name].stateless)}; remove colours and set "
                    f"services.{name}.tag/digest"
                )
            known = {v.name for v in CATALOG[name].volumes}
            for volume in override.volumes:
                if volume not in known:
                    problems.append(
                        f"services.{name}.volumes.{volume}: {name} has no such volume; "
                        f"use one of: {', '.join(sorted(known)) or '(none)'}"
                    )
        return problems

    def _replica_problems(self) -> list[str]:
        if self.environment != "prod":
            return []
        return [
            f"services.{name}.replicas: {spec.replicas} is too few for a stateless service "
            "in prod; use replicas: 2 or more so a deploy or crash drops no request"
            for name, spec in self._services.items()
            if spec.stateless and spec.replicas < 2
        ]

    def _memory_problems(self) -> list[str]:
        used = {host: 0 for host in self.hosts}
        for name, spec in self._services.items():
            for host in self._placements[name]:
                used[host] += spec.memory * spec.containers_per_host
        return [
            f"hosts.{host}.memory: the services' limits add up to {format_size_mb(total)} "
            f"but the host offers {format_size_mb(self.hosts[host].memory)} (a blue-green "
            "service counts twice: both colours run); "
            f"raise hosts.{host}.memory or lower services.<name>.memory"
            for host, total in used.items()
            if total > self.hosts[host].memory
        ]

    def _secret_problems(self) -> list[str]:
        rotatable = self.rotatable_secrets()
        generated = [name for name in rotatable if name not in BY_SECRET]
        return [
            f"secrets.rotation.{name}: the operator sets this key, it is not generated; "
            f"rotate it with `pulumi config set --secret {BY_SECRET[name].config_key}` "
            "and run `up`"
            if name in BY_SECRET
            else f"secrets.rotation.{name}: no service reads a secret of that name; "
            f"use one of: {', '.join(generated)}"
            for name in self.secrets.rotation
            if name not in generated
        ] + [
            f"secrets.max_age_days.{name}: no service reads a secret of that name; "
            f"use one of: {', '.join(rotatable)}"
            for name in self.secrets.max_age_days
            if name not in rotatable
        ]

    def _pin_problems(self) -> list[str]:
        """A colour's secret pins (`services.<svc>.colours.<colour>.secrets`): only a secret the
        service reads, and only at the counter before the stack's, the one earlier value the
        program keeps (an operator-set key has no counter, so no pin of it passes)."""
        problems = []
        for name, spec in self._services.items():
            for colour in COLOURS if spec.colours else ():
                for secret, counter in spec.colours.image(colour).secrets.items():
                    key = f"services.{name}.colours.{colour}.secrets.{secret}"
                    held = {use.secret for use in spec.secrets}
                    current = self.secrets.rotation.get(secret, 0)
                    if secret not in held:
                        problems.append(
                            f"{key}: {name} reads no secret of that name; remove the pin (use "
                            f"one of: {', '.join(sorted(held)) or '(none)'})"
                        )
                    elif counter != current - 1:
                        problems.append(
                            f"{key}: {counter} is not the counter before secrets.rotation."
                            f"{secret} ({current}), the only earlier value kept; "
                            + (f"set it to {current - 1} or remove it" if current else "remove it")
                        )
        return problems

    def rotatable_secrets(self) -> list[str]:
        """The secrets the enabled services read that age and rotate, generated and operator-set,
        in catalog order (a `<name>-previous` is `<name>`'s old value, not one of them)."""
        known = self.secret_names()
        return [name for name in known if not is_previous(name, known)]

    def _backup_target_problems(self) -> list[str]:
        """An offsite copy over plain HTTP outside dev; a local repository on a path the agent
        already mounts (its volumes, tmpfs, config, secrets or the sources it backs up)."""
        problems = []
        offsite = self.backup.offsite
        if offsite and offsite.endpoint.lower().startswith("http:") and self.environment != "dev":
            problems.append(
                f"backup.offsite.endpoint: {quoted(offsite.endpoint)} is plain HTTP, so the "
                "backups' requests and the S3 keys' signatures cross the network unencrypted; "
                "use https:// (http:// is for dev only)"
            )
        if self.backup.sftp_host is None:
            agent = backup_agent.SPEC
            mounts = {
                **{v.path: f"its {v.name} volume" for v in agent.volumes},
                **{path: "a tmpfs" for path in agent.tmpfs},
                agent.config_dir: "its generated config",
                SECRETS_DIR: "its secret files",
                SOURCE_ROOT: "the volumes it backs up",
                backup_agent.WAL_DIR: "its WAL spool",
            }
            repository = self.backup.repository
            for path, what in mounts.items():
                if path and _overlaps(repository, path):
                    problems.append(
                        f"backup.repository: {quoted(repository)} collides with the agent's "
                        f"mount of {what} at {path}; use a directory of its own such as "
                        '"/repository"'
                    )
                    break
        return problems

    def _agent_problems(self) -> list[str]:
        agent = backup_agent.SPEC.name
        if agent not in self._services:
            return []
        # The agent reads volumes and dumps databases only on its own Docker host and networks.
        [agent_host] = self._placements[agent]
        return [
            f"services.{name}.host: {name} keeps daily-backed-up volumes on {host_name}, "
            f"but the backup agent runs on {agent_host} and reaches only its own host; "
            f"keep {name} on {agent_host} or exclude its volumes with a reason"
            for name, spec in self._services.items()
            if spec.daily_volumes
            for host_name in self._placements[name]
            if host_name != agent_host
        ]


_PROBLEMS_MARK = "cross-field:"
"""Prefix that tells the error formatter the message already carries its key paths."""


def _overlaps(path: str, other: str) -> bool:
    """Whether one of two absolute, normalised paths is the other or lies inside it."""
    return path == other or path.startswith(f"{other}/") or other.startswith(f"{path}/")
