"""The whole platform's stack settings as one pydantic model tree.

Stack files say only what differs per stack: hosts, sizes, replicas, placement, versions,
domain, TLS, backup target and mail. Everything else comes from the catalog. Cross-field rules
(prod replicas, host memory, known secret names) live here so a wrong stack file fails before
any resource is registered.
"""

from __future__ import annotations

import ipaddress
import re
from fnmatch import fnmatch
from typing import Literal, Mapping, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.catalog import CATALOG, backup_agent
from components.catalog.context import CatalogContext
from components.catalog.spec import DIGEST_PATTERN, BackupPolicy, ServiceSpec, check_fixed_tag
from components.units import Cpus, SizeMB, format_size_mb

ServiceName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
"""A service the catalog knows; anything else is a typo."""

_DOCKER_HOST = re.compile(r"^(unix:///\S+|ssh://[\w.-]+@[\w.-]+(:\d+)?|tcp://[\w.-]+:\d+)$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9-]{1,63}\.)+[a-z]{2,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
_CRON_FIELD = re.compile(r"^(\*|\d{1,2})$")
_SFTP_REPOSITORY = re.compile(r"^sftp:[^@\s/:]+@(?P<host>[^@\s/:]+):/\S+$")
_LOCAL_REPOSITORY = re.compile(r"^/[^\s:]+$")
_KNOWN_HOSTS_KEY_TYPES = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)$")

OPERATOR_SECRETS: Mapping[str, str] = {
    "backup-ssh-key": "backup_ssh_key",
    "backup-s3-access-key": "s3_access_key_id",
    "backup-s3-secret-key": "s3_secret_access_key",
}
"""Platform secrets pulumi-random cannot make (keys the ASUSTOR's or the S3 provider's admin
issues), by the encrypted config key the operator stores each in."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class HostSettings(_Strict):
    """A Docker daemon: the QNAP, the ASUSTOR, or the local daemon in dev."""

    docker_host: Optional[str] = None
    """`ssh://user@host`, `unix:///path` or `tcp://host:port`; unset means DOCKER_HOST or the local socket."""
    ssh_opts: list[str] = []
    """Extra ssh options for an `ssh://` host (e.g. an identity file)."""
    memory: SizeMB
    """Memory the platform may use on this host; the services' limits must fit in it."""
    cpus: Cpus
    bind_address: str = "127.0.0.1"
    """LAN address published ports bind to (never 0.0.0.0, except the proxy's 80/443)."""
    roles: list[Literal["primary", "backup"]] = Field(min_length=1)
    """`primary` runs the services, `backup` receives the backups; dev puts both on one host."""

    @field_validator("docker_host")
    @classmethod
    def _endpoint(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _DOCKER_HOST.match(value):
            raise ValueError(f'"{value}" is not a Docker endpoint; use e.g. "ssh://deploy@qnap.example.org"')
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


class VolumeOverride(_Strict):
    """A stack's change to one volume: only its backup policy may differ."""

    backup: BackupPolicy


class ServiceOverride(_Strict):
    """What a stack may change about a catalog service."""

    enabled: bool = True
    tag: Optional[str] = None
    image: Optional[str] = Field(default=None, pattern=r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$")
    digest: Optional[str] = Field(default=None, pattern=DIGEST_PATTERN)
    memory: Optional[SizeMB] = None
    cpus: Optional[Cpus] = None
    pids: Optional[int] = Field(default=None, ge=16, le=65536)
    replicas: Optional[int] = Field(default=None, ge=1, le=8)
    host: Optional[str] = None
    """Host name (a key of `hosts`) to run on instead of the one its placement picks."""
    volumes: dict[str, VolumeOverride] = {}

    @field_validator("tag")
    @classmethod
    def _fixed_tag(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else check_fixed_tag(value)


class TlsSettings(_Strict):
    """How the proxy gets certificates."""

    mode: Literal["acme", "internal"]
    """`acme`: Let's Encrypt (public DNS needed). `internal`: Caddy's local CA (dev)."""
    acme_email: Optional[str] = None

    @model_validator(mode="after")
    def _acme_needs_email(self) -> "TlsSettings":
        if self.mode == "acme" and not self.acme_email:
            raise ValueError('mode "acme" needs acme_email: Let\'s Encrypt mails expiry warnings there')
        if self.acme_email and not _EMAIL.match(self.acme_email):
            raise ValueError(f'"{self.acme_email}" is not an e-mail address; use e.g. "ops@example.org"')
        return self


class RetentionSettings(_Strict):
    """How many snapshots restic keeps."""

    daily: int = Field(default=30, ge=1)
    weekly: int = Field(default=13, ge=0)
    monthly: int = Field(default=12, ge=0)


class ChecksSettings(_Strict):
    """`restic check` after each run: a share of the data daily, all of it once a month."""

    daily_subset: str = Field(default="5%", pattern=r"^(\d{1,2}(\.\d+)?%|\d+/\d+)$")
    """restic `--read-data-subset` on ordinary days: `n%` or `n/t`."""
    full_on_day: int = Field(default=1, ge=1, le=28)
    """Day of the month whose check reads every pack."""


class OffsiteSettings(_Strict):
    """The optional S3 copy of every run (restic `copy`), into a bucket the agent prepares with
    versioning, lifecycle and object lock. Its keys are the encrypted config keys
    `s3_access_key_id` and `s3_secret_access_key`."""

    endpoint: str = Field(pattern=r"^https?://[^/\s]+$")
    """S3 endpoint URL without a path, e.g. `https://s3.eu-central-1.amazonaws.com`."""
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = "us-east-1"
    object_lock_days: int = Field(default=30, ge=0, le=3650)
    """Days each object version is locked (GOVERNANCE) after it is written; 0 turns object lock off."""
    noncurrent_days: int = Field(default=90, ge=1, le=3650)
    """Days a replaced or deleted object version is kept before it expires."""


class BackupSettings(_Strict):
    """When and where the backup agent sends its encrypted snapshots."""

    repository: str
    """restic repository: `sftp:user@asustor:/path` (staging, prod; its private key is the encrypted
    config key `backup_ssh_key`), or an absolute path inside the agent (dev)."""
    sftp_known_hosts: Optional[str] = None
    """The ASUSTOR's host key as known_hosts line(s) (`ssh-keyscan -t ed25519 <host>`, checked by
    hand once); required with an sftp repository, so a changed host key stops the backup."""
    schedule: str = "0 2 * * *"
    """Cron line; the agent honours minute and hour."""
    timezone: str = "Europe/Berlin"
    retries: int = Field(default=3, ge=0, le=10)
    retry_delay_s: int = Field(default=300, ge=1)
    retention: RetentionSettings = RetentionSettings()
    checks: ChecksSettings = ChecksSettings()
    offsite: Optional[OffsiteSettings] = None

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not (_SFTP_REPOSITORY.match(value) or _LOCAL_REPOSITORY.match(value)):
            raise ValueError(
                f'"{value}" is not a repository the agent can reach; use "sftp:backup@asustor:/backups/napdms" '
                'or an absolute path inside the agent (S3 goes under backup.offsite)'
            )
        return value

    @field_validator("sftp_known_hosts")
    @classmethod
    def _known_hosts(cls, value: Optional[str]) -> Optional[str]:
        for line in _known_hosts_lines(value or ""):
            fields = line.split()
            if fields[0].startswith("@"):
                fields = fields[1:]
            if len(fields) < 3 or not _KNOWN_HOSTS_KEY_TYPES.match(fields[1]):
                raise ValueError(
                    f'"{line}" is not a known_hosts line; use "<host> ssh-ed25519 AAAA..." as ssh-keyscan prints it'
                )
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
            raise ValueError(f'"{value}" is not a cron line of five fields; use e.g. "0 2 * * *"')
        if not (fields[0].isdigit() and fields[1].isdigit()):
            raise ValueError(f'"{value}" needs a fixed minute and hour; use e.g. "0 2 * * *"')
        if int(fields[0]) > 59 or int(fields[1]) > 23:
            raise ValueError(f'"{value}" has no such time of day; use e.g. "0 2 * * *"')
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{value}" is not an IANA time zone; use e.g. "Europe/Berlin"') from None
        return value

    @property
    def time_of_day(self) -> str:
        """HH:MM the schedule runs at."""
        minute, hour = self.schedule.split()[:2]
        return f"{int(hour):02d}:{int(minute):02d}"

    @property
    def sftp_host(self) -> Optional[str]:
        """The host of an sftp repository, None for a local one."""
        match = _SFTP_REPOSITORY.match(self.repository)
        return match["host"] if match else None


def _known_hosts_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _names_host(line: str, host: str) -> bool:
    """Whether a known_hosts line applies to `host` (hashed names cannot be read: ssh decides)."""
    fields = line.split()
    patterns = fields[1] if fields[0].startswith("@") else fields[0]
    if patterns.startswith("|1|"):
        return True
    return any(fnmatch(host, pattern) for pattern in patterns.split(",") if not pattern.startswith("!"))


class AlertingSettings(_Strict):
    """Where alerts are mailed. The SMTP password is the secret config key `smtp_password`."""

    smtp_host: str
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_from: str
    smtp_to: list[str] = Field(min_length=1)

    @field_validator("smtp_from")
    @classmethod
    def _from(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f'"{value}" is not an e-mail address; use e.g. "alerts@example.org"')
        return value

    @field_validator("smtp_to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            if not _EMAIL.match(address):
                raise ValueError(f'"{address}" is not an e-mail address; use e.g. "ops@example.org"')
        return value


class SecretsSettings(_Strict):
    """Rotation counters: raising a secret's number generates a new value on the next `up`."""

    rotation: dict[str, int] = {}


class PlatformSettings(_Strict):
    """Everything a stack file may say. Parsed once, at the edge, by `load_settings`."""

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
        if not _DOMAIN.match(value):
            raise ValueError(f'"{value}" is not a DNS domain; use e.g. "nap-dms.example.org"')
        return value

    @field_validator("hosts")
    @classmethod
    def _host_names(cls, value: dict[str, HostSettings]) -> dict[str, HostSettings]:
        for name in value:
            if not re.match(r"^[a-z][a-z0-9-]*$", name):
                raise ValueError(f'"{name}" is not a host name; use lower-case letters, digits and -')
        return value

    @model_validator(mode="after")
    def _cross_field_rules(self) -> "PlatformSettings":
        problems = (
            self._role_problems()
            + self._override_problems()
            + self._replica_problems()
            + self._memory_problems()
            + self._secret_problems()
            + self._backup_problems()
        )
        if problems:
            raise ValueError(_PROBLEMS_MARK + "\n".join(problems))
        return self

    # -- resolved views ------------------------------------------------------------------

    def host_for_role(self, role: str) -> str:
        """The first host carrying `role` (validation guarantees there is one)."""
        return next(name for name, host in self.hosts.items() if role in host.roles)

    def placements(self, name: str) -> list[str]:
        """Host names that run service `name`."""
        override = self.services.get(name)
        if override and override.host:
            return [override.host]
        placement = CATALOG[name].placement
        if placement == "every-host":
            return list(self.hosts)
        return [self.host_for_role(placement)]

    def effective_services(self) -> dict[str, ServiceSpec]:
        """Catalog entries with this stack's overrides applied, disabled services left out, and the
        backup agent fitted to this stack's backup target and databases."""
        resolved = {}
        for name, spec in CATALOG.items():
            override = self.services.get(name)
            if override is None:
                resolved[name] = spec
                continue
            if not override.enabled:
                continue
            changes = override.model_dump(exclude_none=True, exclude={"enabled", "host", "volumes"})
            volumes = [
                volume.model_copy(update={"backup": override.volumes[volume.name].backup})
                if volume.name in override.volumes
                else volume
                for volume in spec.volumes
            ]
            resolved[name] = spec.model_copy(update={**changes, "volumes": volumes})
        agent = backup_agent.SPEC.name
        if agent in resolved:
            resolved[agent] = backup_agent.for_stack(resolved[agent], self.backup, resolved)
        return resolved

    def catalog_context(self, stack: str) -> CatalogContext:
        """What the catalog's config renderers may read for this stack."""
        return CatalogContext(
            stack=stack,
            domain=self.domain,
            tls_mode=self.tls.mode,
            acme_email=self.tls.acme_email,
            services=self.effective_services(),
            backup=self.backup,
        )

    def secret_names(self) -> list[str]:
        """Every platform secret the enabled services read, in catalog order."""
        names: dict[str, None] = {}
        for spec in self.effective_services().values():
            for use in spec.secrets:
                names[use.secret] = None
        return list(names)

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
                        f"services.{name}.{key}: {name} is built from {build.dockerfile} at `pulumi up`, not pulled; "
                        "remove the key"
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
        if self.environment != "prod" or any(p.startswith("services.") for p in self._override_problems()):
            return []
        return [
            f"services.{name}.replicas: {spec.replicas} is too few for a stateless service in prod; "
            "use replicas: 2 or more so a deploy or crash drops no request"
            for name, spec in self.effective_services().items()
            if spec.stateless and spec.replicas < 2
        ]

    def _memory_problems(self) -> list[str]:
        if self._role_problems() or self._override_problems():
            return []
        used = {host: 0 for host in self.hosts}
        for name, spec in self.effective_services().items():
            for host in self.placements(name):
                used[host] += spec.memory * spec.replicas
        return [
            f"hosts.{host}.memory: the services' limits add up to {format_size_mb(total)} but the host "
            f"offers {format_size_mb(self.hosts[host].memory)}; raise hosts.{host}.memory or lower "
            "services.<name>.memory"
            for host, total in used.items()
            if total > self.hosts[host].memory
        ]

    def _secret_problems(self) -> list[str]:
        if self._override_problems():
            return []
        known = self.secret_names()
        generated = [name for name in known if name not in OPERATOR_SECRETS]
        return [
            f"secrets.rotation.{name}: the operator sets this key, it is not generated; rotate it with "
            f"`pulumi config set --secret {OPERATOR_SECRETS[name]}` and run `up`"
            if name in OPERATOR_SECRETS
            else f"secrets.rotation.{name}: no service reads a secret of that name; use one of: {', '.join(generated)}"
            for name in self.secrets.rotation
            if name not in generated
        ]

    def _backup_problems(self) -> list[str]:
        problems = []
        host = self.backup.sftp_host
        known_hosts = _known_hosts_lines(self.backup.sftp_known_hosts or "")
        if host and not known_hosts:
            problems.append(
                f"backup.sftp_known_hosts: required for the sftp repository on {host}; add its host key line "
                f"(`ssh-keyscan -t ed25519 {host}`, checked by hand) so a changed key stops the backup"
            )
        elif host and not any(_names_host(line, host) for line in known_hosts):
            problems.append(
                f"backup.sftp_known_hosts: no line names {host}, the host of backup.repository; "
                f"add the line `ssh-keyscan -t ed25519 {host}` prints"
            )
        agent = backup_agent.SPEC.name
        if self._role_problems() or self._override_problems() or agent not in self.effective_services():
            return problems
        # The agent reads volumes and dumps databases only on its own Docker host and networks.
        [agent_host] = self.placements(agent)
        return problems + [
            f"services.{name}.host: {name} keeps daily-backed-up volumes on {host_name}, but the backup agent "
            f"runs on {agent_host} and reaches only its own host; keep {name} on {agent_host} or exclude its "
            "volumes with a reason"
            for name, spec in self.effective_services().items()
            if spec.daily_volumes
            for host_name in self.placements(name)
            if host_name != agent_host
        ]


_PROBLEMS_MARK = "cross-field:"
"""Prefix that tells the error formatter the message already carries its key paths."""
