"""The typed shape of one catalog entry: everything needed to run a service hardened.

A `ServiceSpec` is pure data. Hardening is not configured here (it is the default in
`HardenedService`); what a spec may do is *declare an exception* to a default, always with a
reason, which ends up as a container label that the policy pack and the audit read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components.model.image import Digest, ImageRepository, Tag
from components.model.plan import DUMP_HOOKS, SOURCE_MODELS
from components.model.release import COLOURS, Colour, Colours
from components.model.strict import StrictModel
from components.model.units import Cpus, Duration, SizeMB
from policies.rules import RULE_IDS
from policies.rules.names import Segment

Placement = Literal["primary", "backup", "every-host"]
"""Where a service runs: the primary NAS (QNAP), the backup NAS (ASUSTOR), or on each host."""


_CAPABILITY = re.compile(r"^[A-Z_]+$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9-]{1,30}$")


Pids = Annotated[int, Field(ge=16, le=65536)]
"""A container's process limit."""
Replicas = Annotated[int, Field(ge=1, le=8)]
"""How many containers of a service run on its host."""

SECRETS_DIR = "/run/secrets"
"""Where a service finds its secret files (a read-only volume the init container fills)."""
SECRETS_VOLUME = "run-secrets"
"""Volume name suffix of a service's secret files (mounted at /run/secrets)."""
CONFIG_VOLUME = "run-config"
"""Volume name suffix of a service's generated config files (mounted at its config_dir)."""
SOURCE_ROOT = "/source"
"""Where the backup agent mounts the volumes it backs up as files: `<root>/<service>/<volume>`."""


def source_path(service: str, volume: str) -> str:
    """Where the backup agent reads `volume` of `service` (read-only)."""
    return f"{SOURCE_ROOT}/{service}/{volume}"


class BackupPolicy(StrictModel):
    """Whether a volume is in the daily backup; excluding one needs a reason."""

    policy: Literal["daily", "exclude"]
    """`daily`: in the nightly restic run. `exclude`: deliberately not backed up."""
    reason: str | None = None
    """Why the volume may be lost (required with `exclude`)."""

    @model_validator(mode="after")
    def _exclusion_needs_reason(self) -> BackupPolicy:
        if self.policy == "exclude" and not (self.reason and self.reason.strip()):
            raise ValueError(
                'an excluded volume needs a reason; add reason: "<why it may be lost>"'
            )
        return self


class VolumeMount(StrictModel):
    """A named Docker volume owned by the service."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    """Short name, unique within the service; the Docker volume is `<service>-<name>`."""
    path: str = Field(pattern=r"^/")
    """Mount point inside the container."""
    backup: BackupPolicy
    """Backup policy: required, so no volume is silently left out of the backup."""
    chown: bool = False
    """The image has this path root-owned: a one-shot init container hands it, recursively, to
    the service user when the container is created, and the volume starts empty instead of as a
    copy of the image's directory (keep such volumes small)."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in (SECRETS_VOLUME, CONFIG_VOLUME):
            raise ValueError(f'"{value}" is reserved for generated files; pick another volume name')
        return value


Environment = Literal["dev", "staging", "prod"]
"""A stack's `environment`: which rule set applies."""


class HostMount(StrictModel):
    """A host path bind-mounted read-only, an exception that needs a reason."""

    source: str = Field(pattern=r"^/")
    target: str = Field(pattern=r"^/")
    reason: str = Field(min_length=8)
    environments: list[Environment] | None = None
    """Only in these environments (None: in every one)."""


class Port(StrictModel):
    """A published port. Bound to the host's LAN address unless `all_interfaces` says why not."""

    internal: int = Field(ge=1, le=65535)
    external: int = Field(ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"
    all_interfaces: str | None = None
    """Reason to bind 0.0.0.0 instead of the host's address (only the proxy's 80/443)."""


class CapAdd(StrictModel):
    """One Linux capability added back after `drop ALL`, with the reason it is needed."""

    name: str
    reason: str = Field(min_length=8)

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        value = value.upper().removeprefix("CAP_")
        if not _CAPABILITY.match(value):
            raise ValueError(f'"{value}" is not a capability name; use e.g. "CHOWN"')
        return value


class Exemption(StrictModel):
    """An explicit exception to a hardening default, written to a container label."""

    rule: str
    """A rule id of the policy pack (`policies/rules`), e.g. `run-as-root`."""
    reason: str = Field(min_length=8)
    environments: list[Environment] | None = None
    """Only in these environments (None: in every one). A rule that hands the container the
    host (`policies.rules.grants.UNWAIVABLE`) can be waived in dev only."""

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in RULE_IDS:
            raise ValueError(
                f'"{value}" is not a rule id; use one of {", ".join(sorted(RULE_IDS))}'
            )
        return value


class SecretUse(StrictModel):
    """A platform secret this service reads, delivered as a file under /run/secrets."""

    secret: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    """Platform-wide secret name; two services naming the same secret share it."""
    env: str | None = None
    """Environment variable that receives the file's *path* (the image's `*_FILE` convention)."""
    file: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$")
    """File name under /run/secrets; defaults to the secret's name."""
    template: str | None = None
    """File content around the value, `{secret}` marking where it goes (e.g. a config line)."""

    @model_validator(mode="after")
    def _template_has_slot(self) -> SecretUse:
        if self.template is not None and "{secret}" not in self.template:
            raise ValueError("a secret template must contain {secret}")
        return self

    @property
    def file_name(self) -> str:
        """The file name under /run/secrets."""
        return self.file or self.secret

    @property
    def path(self) -> str:
        """Absolute path of the secret file inside the container."""
        return f"{SECRETS_DIR}/{self.file_name}"


PREVIOUS_SUFFIX = "-previous"
"""A service that reads `<name>-previous` beside a generated `<name>` gets the value `<name>` had
before its latest rotation (`components.secrets`): the backup agent, to move the repository's key
over."""


def previous_of(name: str) -> str:
    """The name under which a generated secret's previous value is delivered."""
    return f"{name}{PREVIOUS_SUFFIX}"


def is_previous(name: str, names: Iterable[str]) -> bool:
    """Whether `name` is the previous value of another of `names`, not a secret of its own."""
    return name.endswith(PREVIOUS_SUFFIX) and name.removesuffix(PREVIOUS_SUFFIX) in set(names)


class HealthCheck(StrictModel):
    """A Docker health check in exec form, run with binaries that exist in the image."""

    test: list[str] = Field(min_length=2)
    interval: Duration = "10s"
    timeout: Duration = "5s"
    retries: int = Field(default=3, ge=1, le=20)
    start_period: Duration = "30s"

    @field_validator("test")
    @classmethod
    def _exec_form(cls, value: list[str]) -> list[str]:
        if value[0] not in ("CMD", "CMD-SHELL"):
            raise ValueError('a health check starts with "CMD" or "CMD-SHELL"')
        return value


class BackupHook(StrictModel):
    """How the backup agent dumps a database consistently (borgmatic style) instead of copying
    its files: a running server's data directory is no consistent backup."""

    kind: Literal[DUMP_HOOKS]  # type: ignore[valid-type]
    """The agent's dump hook (`napdms_ops/backup/hooks/<kind>.py`): `postgresql` (`pg_dumpall
    --globals-only` + `pg_dump`), `mongodb` (`mongodump`), `redis` (`redis-cli --rdb`)."""
    port: int = Field(ge=1, le=65535)
    """Port the server listens on, reached through the service's alias on the data network."""
    user: str | None = None
    """Login the dump connects as (PostgreSQL: a superuser, so it reads roles and every
    database)."""
    password_secret: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]*$")
    """Platform secret holding that login's password (or Redis' requirepass); the agent receives it
    as /run/secrets/<name>. It must be a secret the service itself reads, so both hold one value."""
    wal: bool = False
    """Also archive the server's write-ahead log (base backups and `pg_receivewal` into a volume of
    the agent), for point-in-time recovery; postgresql only. The server must accept replication
    connections from `user`."""

    @model_validator(mode="after")
    def _wal_is_postgresql_only(self) -> BackupHook:
        if self.wal and self.kind != "postgresql":
            raise ValueError(
                f"a {self.kind} hook has no write-ahead log to archive; wal is for postgresql "
                "hooks only, remove it"
            )
        return self

    @model_validator(mode="after")
    def _user_fits_kind(self) -> BackupHook:
        source = next(m for m in SOURCE_MODELS if m.model_fields["hook"].default == self.kind)
        if self.user is not None and "user" not in source.model_fields:
            raise ValueError(
                f"a {self.kind} hook has no user; it authenticates with the password alone"
            )
        if self.kind == "postgresql" and self.user is None:
            raise ValueError('a postgresql hook needs a user; name a superuser such as "postgres"')
        return self


class ImageBuild(StrictModel):
    """An image built from this repository at `pulumi up`, on the host that runs it, not pulled."""

    dockerfile: str = Field(pattern=r"^[^/].*Dockerfile$")
    """Path of the Dockerfile relative to the repository root (Pulumi runs the program there)."""
    context: str = "."
    """Build context relative to the repository root; the root `.dockerignore` narrows it."""
    args: dict[str, str] = {}
    """Build arguments (`ARG` in the Dockerfile)."""


MonitorKind = Literal["host", "containers", "postgresql", "backup", "proxy", "monitoring", "logs"]
"""A kind of service with alerts and panels of its own beyond every service's (up, probe,
restarts): one module each under `components/monitoring/kinds/`."""


class MetricsEndpoint(StrictModel):
    """Where Prometheus scrapes a service's own metrics, on every replica."""

    port: int = Field(ge=1, le=65535)
    path: str = Field(default="/metrics", pattern=r"^/[A-Za-z0-9/._-]*$")


class Probe(StrictModel):
    """What the blackbox exporter checks from the network, as a client would: the service's
    health endpoint (`http`, any 2xx) or its listening port (`tcp`)."""

    kind: Literal["http", "tcp"]
    port: int = Field(ge=1, le=65535)
    path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9/._?=&-]*$")
    """Request path of an `http` probe."""

    @model_validator(mode="after")
    def _path_fits_kind(self) -> Probe:
        if self.kind == "http" and self.path is None:
            raise ValueError('an http probe needs a path, e.g. path: "/healthz"')
        if self.kind == "tcp" and self.path is not None:
            raise ValueError("a tcp probe only connects; remove path")
        return self


class PublicRoute(StrictModel):
    """A name under the platform domain that the reverse proxy serves over TLS."""

    subdomain: str = Field(pattern=r"^[a-z0-9-]+$")
    port: int = Field(ge=1, le=65535)


_NO_COLOURS_BECAUSE = {
    False: "is not stateless (one instance per volume), so it cannot run two colours side by "
    "side (a deploy restarts it while the proxy holds its requests)",
    True: "is not behind the proxy, so nothing switches its traffic between colours (a deploy "
    "replaces it in place, health-gated)",
}


def why_no_colours(stateless: bool) -> str:
    """Why a service runs no second colour (completes "<service> ...")."""
    return _NO_COLOURS_BECAUSE[stateless]


class ServiceSpec(StrictModel):
    """One catalog entry. Stacks override only sizes, replicas, placement and image version."""

    name: str
    description: str
    image: ImageRepository
    """Repository as pulled, e.g. `docker.io/library/postgres`, or the local name of a built
    image."""
    tag: Tag
    """A real, fixed release tag (never `latest`)."""
    digest: Digest | None = None
    """Optional manifest digest; when set the pull itself is pinned."""
    user: str = Field(pattern=r"^\d+(:\d+)?$")
    """Numeric uid[:gid] so the runtime never resolves a name to root."""
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = {}
    """Non-secret environment. `{domain}` and `{stack}` are substituted."""
    ports: list[Port] = []
    volumes: list[VolumeMount] = []
    host_mounts: list[HostMount] = []
    tmpfs: list[str] = []
    """Paths the service writes that need no persistence (root filesystem is read-only)."""
    secrets: list[SecretUse] = []
    config_dir: str | None = None
    """Where generated config files land (a volume, so they can be uploaded before start)."""
    networks: list[Segment] = Field(min_length=1)
    """Network segments it joins; `data` and `monitoring` are internal (no route out)."""
    health: HealthCheck
    cap_add: list[CapAdd] = []
    exemptions: list[Exemption] = []
    memory: SizeMB
    cpus: Cpus
    pids: Pids = 512
    replicas: Replicas = 1
    """Containers of the service on its host; of each colour, for a coloured service."""
    stateless: bool = False
    """Holds no state of its own, so prod runs two or more replicas; behind the proxy it deploys
    blue-green: two colours of `replicas` containers each (`colours`)."""
    colours: Colours | None = None
    """Blue-green: the live colour and each colour's image. Stateless services behind the proxy
    only (`blue_green`); the stack's settings set it for every one of them (`Colours()` unless
    the stack file says otherwise).
    None: one set of replicas, replaced in place by a new image."""
    reload: list[str] | None = Field(default=None, min_length=1)
    """A command (argv) run with `docker exec` in each replica after the init container wrote new
    generated files, so the service reads them again without a restart (the proxy: `caddy
    reload`). None: new files replace the replicas."""
    hold_s: int = Field(default=30, ge=1, le=600)
    """Seconds the proxy holds and retries a request to this service while no replica answers
    (a service that is not stateless has one instance per volume, so a deploy stops the old
    one before the new one starts): the restart gap must fit in it, or the user sees an error."""
    placement: Placement = "primary"
    public: PublicRoute | None = None
    depends_on: list[str] = []
    stop_grace_s: int = Field(default=30, ge=1, le=600)
    reads_backed_up_volumes: bool = False
    """Mount the daily-backed-up volumes of its host's services without a `backup_hook` read-only
    under /source (the backup agent)."""
    backup_hook: BackupHook | None = None
    """Back this database up by a dump; its daily volumes are then never mounted into the agent."""
    build: ImageBuild | None = None
    """Build the image from this repository instead of pulling `image:tag`."""
    metrics: MetricsEndpoint | None = None
    """Its own Prometheus metrics, scraped as job `<name>`."""
    probe: Probe | None = None
    """Checked by the blackbox exporter; every service should have one (a test says which may
    not)."""
    monitors: list[MonitorKind] = []
    """Kinds whose alerts and panels apply to it beyond every service's own."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value):
            raise ValueError(
                f'"{value}" is not a service name; use lower-case letters, digits and -'
            )
        # `<service>-<colour>-<n>` names a coloured replica: `x-blue` would collide with x's.
        if value.endswith(tuple(f"-{colour}" for colour in COLOURS)):
            raise ValueError(
                f'"{value}" ends in a colour, which names the replicas of a blue-green service; '
                "pick another name"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ServiceSpec:
        names = [v.name for v in self.volumes]
        if len(names) != len(set(names)):
            raise ValueError(f"volume names repeat in {names}")
        if self.user.split(":")[0] == "0" and not self.exempt("run-as-root"):
            raise ValueError(
                'user 0 is root; pick the image\'s service uid or add a "run-as-root" exemption'
            )
        files = [use.file_name for use in self.secrets]
        if len(files) != len(set(files)):
            raise ValueError(f"secret file names repeat in {files}")
        mounted = {v.path for v in self.volumes} | {m.target for m in self.host_mounts}
        if self.config_dir and self.config_dir in mounted:
            raise ValueError(f"config_dir {self.config_dir} is also a data mount")
        hook = self.backup_hook
        if (
            hook
            and hook.password_secret
            and hook.password_secret not in {use.secret for use in self.secrets}
        ):
            service_secrets = ", ".join(dict.fromkeys(use.secret for use in self.secrets))
            raise ValueError(
                f'backup_hook.password_secret "{hook.password_secret}" is not a secret '
                f"{self.name} reads, so it may not exist or may differ from the server's; "
                f"name one of: {service_secrets or '(none)'}"
            )
        if self.build and (
            self.digest or any(self.colours.image(c).digest for c in COLOURS if self.colours)
        ):
            raise ValueError(
                "a built image has no registry digest; remove digest "
                "(the container runs the build's id)"
            )
        if self.colours is not None and not self.blue_green:
            raise ValueError(f"{self.name} {why_no_colours(self.stateless)}; remove colours")
        if self.reload and self.secrets:
            raise ValueError(
                "a reload keeps the running replicas, but a rotated secret is read only at "
                "start and needs a restart; remove reload, or deliver no secrets to "
                f"{self.name}"
            )
        return self

    @property
    def blue_green(self) -> bool:
        """Deploys blue-green: stateless, and reached through the proxy, which switches colours.
        A stateless internal service (the prober) is replaced in place: nothing routes to it by
        colour, and its readers would have to follow the switch."""
        return self.stateless and self.public is not None

    @property
    def containers_per_host(self) -> int:
        """Long-running containers of the service on each of its hosts: both colours' replicas
        for a coloured service (the idle colour keeps running, ready for a rollback)."""
        return self.replicas * (len(COLOURS) if self.colours else 1)

    @property
    def daily_volumes(self) -> list[VolumeMount]:
        """The volumes in the nightly backup."""
        return [v for v in self.volumes if v.backup.policy == "daily"]

    def exempt(self, rule: str) -> str | None:
        """The reason this service is exempt from `rule`, or None."""
        return next((e.reason for e in self.exemptions if e.rule == rule), None)

    def needs_init(self, files: Mapping[str, str]) -> bool:
        """Whether its one-shot init container exists: it writes the secret files and the
        generated `files` into their volumes, and hands `chown` volumes to the service user."""
        return bool(self.secrets or files or any(v.chown for v in self.volumes))

    def waivers(self) -> dict[str, str]:
        """Every rule its containers are exempt from, with the reason: the catalog's exemptions
        and, for a port that must face every interface, `port-all-interfaces`. The stack grants
        exactly these (`policies/config/<stack>.json`), and the containers record them."""
        waived = {e.rule: e.reason for e in self.exemptions}
        public = next((p.all_interfaces for p in self.ports if p.all_interfaces), None)
        if public:
            waived["port-all-interfaces"] = public
        return waived

    def in_environment(self, environment: Environment) -> ServiceSpec:
        """This entry as it runs in `environment`: host mounts and exemptions limited to other
        environments left out."""
        return self.model_copy(
            update={
                "host_mounts": [
                    m for m in self.host_mounts if environment in (m.environments or [environment])
                ],
                "exemptions": [
                    e for e in self.exemptions if environment in (e.environments or [environment])
                ],
            }
        )

    @property
    def uid(self) -> int:
        """Numeric user id the container runs as."""
        return int(self.user.split(":")[0])

    @property
    def gid(self) -> int:
        """Numeric group id (defaults to the uid, as Docker does for numeric users)."""
        parts = self.user.split(":")
        return int(parts[1]) if len(parts) > 1 else int(parts[0])

    @property
    def image_ref(self) -> str:
        """What to pull (`repo:tag`, plus `@digest` when the catalog pins one), or the name a
        build tags."""
        ref = f"{self.image}:{self.tag}"
        return f"{ref}@{self.digest}" if self.digest else ref

    def colour_image_ref(self, colour: Colour) -> str:
        """What `colour` pulls, as `image_ref` spells it: the colour's tag and digest, each
        falling back to the service's. The service's digest pins the service's tag only: a
        colour with a tag of its own and no digest is pulled by that tag."""
        image = (self.colours or Colours()).image(colour)
        tag = image.tag or self.tag
        digest = image.digest or (self.digest if tag == self.tag else None)
        ref = f"{self.image}:{tag}"
        return f"{ref}@{digest}" if digest else ref


INIT_WAIVERS: dict[str, str] = {
    "run-as-root": "sets file owners; CHOWN and FOWNER are its only capabilities",
    "writable-root": "the provider uploads files through /, refused on a read-only root",
    "no-health-check": "one-shot: exits when done, up waits for its exit",
    "no-restart-policy": "one-shot: must not restart after it exits",
}
"""The exemptions of every service's one-shot init container (`<service>-init`, a coloured
service's `<service>-<colour>-init`)."""
