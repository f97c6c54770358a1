"""Backup agent: the restic orchestrator of `napdms_ops/backup`, built from this repository.

It dumps each database through its `backup_hook` (over the data network, or chat for MongoDB),
streams PostgreSQL's WAL into its `wal` volume when the hook says `wal` (point-in-time recovery),
and backs up every other daily volume as files, mounted read-only under /source. What to back up,
where to and when is one file, `plan.json` (`components.model.plan.BackupPlan`), rendered here
from the stack's settings and catalog into the agent's config volume.
"""

from __future__ import annotations

from collections.abc import Mapping

from components.model.backup import BackupSettings
from components.model.context import CatalogContext
from components.model.operator_keys import BACKUP_SSH_KEY, S3_ACCESS_KEY, S3_SECRET_KEY
from components.model.plan import (
    AGENT_SERVICE,
    CONFIG_DIR,
    KNOWN_HOSTS_FILE,
    PLAN_FILE,
    BackupPlan,
    DumpSource,
    FilesSource,
    Offsite,
    Repository,
    Schedule,
    SftpAccess,
    WalArchive,
    dump_source,
)
from components.model.spec import (
    BackupPolicy,
    CapAdd,
    Exemption,
    HealthCheck,
    ImageBuild,
    MetricsEndpoint,
    Probe,
    SecretUse,
    ServiceSpec,
    VolumeMount,
    previous_of,
    source_path,
)
from policies.rules.names import object_prefix

STATE_DIR = "/state"
CACHE_DIR = "/cache"
WAL_DIR = "/wal"
"""The agent's WAL spool: one directory per archived server (`WalArchive.spool_dir`)."""
DOCKERFILE = "napdms_ops/backup/Dockerfile"
POSTGRES_IMAGE_ARG = "POSTGRES_IMAGE"
"""Build argument naming the Dockerfile's base: the stack's PostgreSQL image."""

RESTIC_PASSWORD = "restic-password"
RESTIC_PASSWORD_PREVIOUS = previous_of(RESTIC_PASSWORD)
"""Its value before the latest rotation: the agent moves the repository's key from it
(`napdms_ops.backup.rekey`)."""

SPEC = ServiceSpec(
    name=AGENT_SERVICE,
    description="restic orchestrator: database dumps and daily volumes, to the ASUSTOR (and S3)",
    image="napdms/backup-agent",
    # Names the recipe's version only: the container runs the build's image id, so a changed
    # Dockerfile or orchestrator replaces it whatever the tag says.
    tag="1.0.0",
    build=ImageBuild(dockerfile=DOCKERFILE),
    user="0:0",
    command=["agent", "--plan", PLAN_FILE],
    # restic stages pack files in TMPDIR (several 16 MiB packs at once), more than the /tmp tmpfs
    # holds.
    env={"TMPDIR": CACHE_DIR},
    volumes=[
        VolumeMount(
            name="state",
            path=STATE_DIR,
            backup=BackupPolicy(
                policy="exclude",
                reason=(
                    "lock, last-run record and metrics; the runs themselves are in the repository"
                ),
            ),
        ),
        VolumeMount(
            name="cache",
            path=CACHE_DIR,
            backup=BackupPolicy(
                policy="exclude",
                reason="restic's index cache and staged packs, rebuilt from the repository",
            ),
        ),
    ],
    # The base image declares VOLUME /var/lib/postgresql/data: without a mount there every
    # container would get an anonymous volume that has no backup policy.
    tmpfs=["/tmp", "/var/lib/postgresql/data"],
    secrets=[SecretUse(secret=RESTIC_PASSWORD), SecretUse(secret=RESTIC_PASSWORD_PREVIOUS)],
    config_dir=CONFIG_DIR,
    # edge: the ASUSTOR and S3; data and chat: the databases it dumps (chat: MongoDB);
    # monitoring: Prometheus scrapes it.
    networks=["edge", "data", "chat", "monitoring"],
    cap_add=[
        CapAdd(name="DAC_READ_SEARCH", reason="read every service's files whatever their owner")
    ],
    exemptions=[
        Exemption(
            rule="run-as-root", reason="reads all volumes; the only capability is DAC_READ_SEARCH"
        ),
        Exemption(
            rule="dangerous-capability",
            reason=(
                "DAC_READ_SEARCH to read every volume whatever its owner; each one is mounted "
                "read-only"
            ),
        ),
        Exemption(
            rule="image-not-pinned",
            reason=(
                f"built from {DOCKERFILE} at pulumi up, so no registry digest exists; "
                "the container runs the build's image id and the base is the stack's "
                "PostgreSQL image"
            ),
        ),
    ],
    health=HealthCheck(
        test=["CMD", "python3", "-m", "napdms_ops.backup", "health", "--plan", PLAN_FILE],
        # A Python start per probe: every 30 s is enough for a loop that beats every 30 s.
        interval="30s",
        timeout="10s",
    ),
    memory="1g",
    cpus=1,
    reads_backed_up_volumes=True,
    metrics=MetricsEndpoint(port=9102),
    # A port probe: /metrics asks every database for its connections.
    probe=Probe(kind="tcp", port=9102),
    monitors=["backup"],
)


def hooked(services: Mapping[str, ServiceSpec]) -> list[ServiceSpec]:
    """Services the agent dumps: a backup hook and at least one daily volume."""
    return [spec for spec in services.values() if spec.backup_hook and spec.daily_volumes]


def file_backed(services: Mapping[str, ServiceSpec]) -> list[ServiceSpec]:
    """Services whose daily volumes the agent reads as files under /source (never its own)."""
    return [
        spec
        for spec in services.values()
        if not spec.backup_hook and not spec.reads_backed_up_volumes and spec.daily_volumes
    ]


def for_stack(
    spec: ServiceSpec, backup: BackupSettings, services: Mapping[str, ServiceSpec]
) -> ServiceSpec:
    """The agent as this stack runs it: the passwords of the databases it dumps, the keys of its
    backup target, a volume for the WAL it archives and one for a local repository, and the
    stack's PostgreSQL image as its base."""
    secrets = {use.secret: use for use in spec.secrets}
    for service in hooked(services):
        secret = service.backup_hook.password_secret
        if secret:
            secrets.setdefault(secret, SecretUse(secret=secret))
    if backup.sftp_host:
        # OpenSSH refuses a private key without its final newline; a value piped into
        # `pulumi config set` may have lost it. A blank line after the key is harmless.
        secrets[BACKUP_SSH_KEY.secret] = SecretUse(
            secret=BACKUP_SSH_KEY.secret, template="{secret}\n"
        )
    if backup.offsite:
        secrets[S3_ACCESS_KEY.secret] = SecretUse(secret=S3_ACCESS_KEY.secret)
        secrets[S3_SECRET_KEY.secret] = SecretUse(secret=S3_SECRET_KEY.secret)
    volumes = list(spec.volumes)
    if any(service.backup_hook.wal for service in hooked(services)):
        volumes.append(
            VolumeMount(
                name="wal",
                path=WAL_DIR,
                backup=BackupPolicy(
                    policy="exclude",
                    reason=(
                        "WAL on its way to the repository; the archive itself backs it up, "
                        "every ship interval"
                    ),
                ),
            )
        )
    if not backup.sftp_host:
        # A local repository (dev) needs a volume of its own: in the cache volume it would look
        # disposable, and backing it up would put the backups inside themselves.
        volumes.append(
            VolumeMount(
                name="repository",
                path=backup.repository,
                backup=BackupPolicy(
                    policy="exclude",
                    reason="the local restic repository: it holds the backups themselves",
                ),
            )
        )
    postgres = services.get("postgres")
    args = (
        {**spec.build.args, POSTGRES_IMAGE_ARG: postgres.image_ref} if postgres else spec.build.args
    )
    return spec.model_copy(
        update={
            "secrets": list(secrets.values()),
            "volumes": volumes,
            "build": spec.build.model_copy(update={"args": args}),
        }
    )


def files(context: CatalogContext) -> dict[str, str]:
    """`plan.json` for the agent, and the ASUSTOR's known_hosts when the repository is sftp."""
    backup = context.backup
    sftp = backup.sftp_host is not None
    plan = BackupPlan(
        stack=context.stack,
        host_tag=object_prefix(context.stack),
        repository=Repository(
            url=backup.repository,
            password_file=_secret_file(RESTIC_PASSWORD),
            previous_password_file=_secret_file(RESTIC_PASSWORD_PREVIOUS),
            sftp=SftpAccess(
                key_file=_secret_file(BACKUP_SSH_KEY.secret), known_hosts_file=KNOWN_HOSTS_FILE
            )
            if sftp
            else None,
        ),
        offsite=_offsite(context),
        sources=[_hook_source(spec) for spec in hooked(context.services)]
        + [
            FilesSource(
                service=spec.name,
                paths=[source_path(spec.name, v.name) for v in spec.daily_volumes],
            )
            for spec in file_backed(context.services)
        ],
        schedule=Schedule(
            time_of_day=backup.time_of_day,
            timezone=backup.timezone,
            retries=backup.retries,
            retry_delay_s=backup.retry_delay_s,
        ),
        retention=backup.retention,
        checks=backup.checks,
        state_dir=STATE_DIR,
        cache_dir=CACHE_DIR,
    )
    rendered = {"plan.json": plan.model_dump_json(indent=2) + "\n"}
    if sftp:
        rendered["known_hosts"] = backup.sftp_known_hosts.strip() + "\n"
    return rendered


def _hook_source(spec: ServiceSpec) -> DumpSource:
    """The dump source of a hooked service, reached by its alias on the network they share."""
    hook = spec.backup_hook
    fields = {"service": spec.name, "host": spec.name, "port": hook.port}
    if hook.user is not None:
        fields["user"] = hook.user
    if hook.password_secret:
        fields["password_file"] = _secret_file(hook.password_secret)
    if hook.wal:
        fields["wal"] = WalArchive(spool_dir=f"{WAL_DIR}/{spec.name}")
    return dump_source(hook.kind, **fields)


def _offsite(context: CatalogContext) -> Offsite | None:
    offsite = context.backup.offsite
    if offsite is None:
        return None
    return Offsite(
        # One prefix per stack: each stack's repository has its own restic password.
        repository=Repository(
            url=f"s3:{offsite.endpoint}/{offsite.bucket}/{object_prefix(context.stack)}",
            password_file=_secret_file(RESTIC_PASSWORD),
            previous_password_file=_secret_file(RESTIC_PASSWORD_PREVIOUS),
            s3_access_key_file=_secret_file(S3_ACCESS_KEY.secret),
            s3_secret_key_file=_secret_file(S3_SECRET_KEY.secret),
        ),
        **offsite.model_dump(),
    )


def _secret_file(secret: str) -> str:
    return SecretUse(secret=secret).path
