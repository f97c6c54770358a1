"""The backup agent's input: one JSON file the Pulumi program renders from the catalog.

The plan is the contract between the program (which knows the services, volumes and secrets of a
stack) and the agent (which only runs restic and the dump tools). It names secret *files*, never
secret values, so it can sit in a config volume and in test fixtures alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from components.model.strict import StrictModel

AGENT_SERVICE = "backup-agent"
"""The backup agent's catalog name, hence its `napdms.service` label and container names."""
CONFIG_DIR = "/etc/napdms-backup"
"""Where the program puts the agent's generated files (its config volume)."""
PLAN_FILE = f"{CONFIG_DIR}/plan.json"
"""The plan inside the agent's container."""
KNOWN_HOSTS_FILE = f"{CONFIG_DIR}/known_hosts"
_S3_ENDPOINT = r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?"


class SftpAccess(StrictModel):
    """How restic's sftp backend reaches the ASUSTOR: a key and a pinned host key, no prompts."""

    key_file: str = Field(pattern=r"^/")
    """Private key of the backup user on the ASUSTOR (a secret file)."""
    known_hosts_file: str = Field(pattern=r"^/")
    """known_hosts line(s) of the ASUSTOR, so a changed host key stops the backup."""
    port: int = Field(default=22, ge=1, le=65535)
    alive_interval_s: int = Field(default=5, ge=1, le=300)
    """ssh ServerAliveInterval: with `alive_count_max` it bounds how long a cut link hangs a run."""
    alive_count_max: int = Field(default=3, ge=1, le=20)
    connect_timeout_s: int = Field(default=10, ge=1, le=300)


class Repository(StrictModel):
    """One restic repository: the primary on the ASUSTOR, or the offsite S3 copy."""

    url: str = Field(min_length=1)
    """restic repository string: `sftp:user@host:/path`, `s3:https://host/bucket/path`, or a
    path."""
    password_file: str = Field(pattern=r"^/")
    """File holding the repository's encryption password (restic's RESTIC_PASSWORD_FILE)."""
    previous_password_file: str | None = Field(default=None, pattern=r"^/")
    """File holding the password from before the latest rotation: the agent adds the current one
    as a key with it, then removes its key (`napdms_ops.backup.rekey`). Jobs use `password_file`."""
    sftp: SftpAccess | None = None
    """Required when `url` starts with `sftp:`."""
    s3_access_key_file: str | None = Field(default=None, pattern=r"^/")
    """For `s3:` repositories: files holding the access key id and the secret key."""
    s3_secret_key_file: str | None = Field(default=None, pattern=r"^/")

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not (value.startswith(("sftp:", "s3:", "/"))):
            raise ValueError(
                f'"{value}" is not a restic repository; use "sftp:user@host:/path", '
                '"s3:https://host/bucket" or an absolute path'
            )
        return value


class OffsiteBucket(StrictModel):
    """The optional S3 copy of every run (restic `copy`), into a bucket the agent prepares with
    versioning, lifecycle and object lock. A stack's `backup.offsite`; its keys are the encrypted
    config keys `s3_access_key_id` and `s3_secret_access_key`."""

    endpoint: str = Field(json_schema_extra={"pattern": f"^{_S3_ENDPOINT}$"})
    """S3 endpoint URL without a path or credentials, e.g. `https://s3.eu-central-1.amazonaws.com`
    (AWS or compatible), also used by boto3 to prepare the bucket. http:// only in dev."""
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = Field(default="us-east-1", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    object_lock_days: int = Field(default=30, ge=0, le=3650)
    """Days each object version is locked (GOVERNANCE) after it is written; 0 turns object lock
    off."""
    noncurrent_days: int = Field(default=90, ge=1, le=3650)
    """Days a replaced or deleted object version is kept before it expires."""

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if "@" in value:
            # Not quoted back: the part before @ is a key.
            raise ValueError(
                "holds credentials (user:key@host), which would be written to the plan in plain "
                "text; remove them and set the encrypted keys s3_access_key_id and "
                "s3_secret_access_key"
            )
        if not re.fullmatch(_S3_ENDPOINT, value):
            raise ValueError(
                f"{json.dumps(value)} is not an S3 endpoint; use scheme and host only, "
                'e.g. "https://s3.eu-central-1.amazonaws.com"'
            )
        return value


class Offsite(OffsiteBucket):
    """The offsite bucket as the agent uses it: plus the restic repository inside it."""

    repository: Repository


class Retention(StrictModel):
    """restic `forget` policy applied after each successful run."""

    daily: int = Field(default=30, ge=1, le=3660)
    weekly: int = Field(default=13, ge=0, le=520)
    monthly: int = Field(default=12, ge=0, le=1200)
    """Bounded at ten years (daily, weekly) and a hundred (monthly): more is a typo."""


class Checks(StrictModel):
    """`restic check` after each run: a share of the data daily, all of it once a month."""

    daily_subset: str = Field(default="5%", pattern=r"^(\d{1,2}(\.\d+)?%|\d+/\d+)$")
    """restic `--read-data-subset` for ordinary days (`n%` or `n/t`)."""
    full_on_day: int = Field(default=1, ge=1, le=28)
    """Day of the month whose run reads every pack (`--read-data`)."""


class Schedule(StrictModel):
    """When the agent runs and how it retries a failed attempt."""

    time_of_day: str = Field(default="02:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    timezone: str = "Europe/Berlin"
    retries: int = Field(default=3, ge=0, le=10)
    """Further attempts after a failed one; each retries only the services that failed."""
    retry_delay_s: float = Field(default=300, ge=0)


class AgentHealth(StrictModel):
    """What the agent's `health` command calls alive: a beating loop, and a run that moves."""

    beat_s: float = Field(default=30, gt=0, le=600)
    """The agent beats its heartbeat this often, between runs and during them; `health` fails
    after four missed beats."""
    stall_s: float = Field(default=1800, gt=0)
    """A run whose processes (restic, the dump tools; not ssh's keep-alives) move less than 1 KiB/s
    and start or end none for this long hangs: `health` fails. Longer than
    `schedule.retry_delay_s`, which a run waits between attempts."""
    max_run_s: float = Field(default=23 * 3600, gt=0)
    """A run still going after this long hangs too, progress or not (the next one is due)."""


class FilesSource(StrictModel):
    """Volume data backed up as files (Gitea, n8n, RocketChat uploads, NAP-DMS documents)."""

    hook: Literal["files"] = "files"
    service: str
    paths: list[str] = Field(min_length=1)
    """Absolute paths the agent reads (the volumes, mounted read-only under /source)."""


class DumpSource(StrictModel):
    """A database server the agent dumps over the data network: what every dump hook needs."""

    service: str
    host: str
    """The service's alias on the data network."""
    port: int = Field(ge=1, le=65535)
    password_file: str | None = Field(default=None, pattern=r"^/")
    """The login's password (or Redis' requirepass), as a secret file of the agent."""


class WalArchive(StrictModel):
    """Continuous archiving of a PostgreSQL server's write-ahead log, for point-in-time recovery.

    The agent streams the WAL with `pg_receivewal` over a replication slot into `spool_dir` (a
    volume of its own) and backs the spool up into the repository every `ship_interval_s`, the
    segment being written included: a commit is in the repository within about one interval. Each
    run adds a physical base backup (`pg_basebackup`), and a restore point with every table's sums
    is set once a day at a random moment, for the drill.
    """

    spool_dir: str = Field(pattern=r"^/")
    """Where `pg_receivewal` writes; it holds the WAL since the newest base backup."""
    slot: str = Field(default="napdms_backup", pattern=r"^[a-z0-9_]{1,63}$")
    """The replication slot, so the server keeps WAL the agent has not received yet (bounded by
    the server's `max_slot_wal_keep_size`)."""
    ship_interval_s: float = Field(default=60, ge=5, le=240)
    """How often the spool goes to the repository: the recovery point objective's main term."""
    marker_interval_s: float = Field(default=86400, ge=60, le=7 * 86400)
    """Restore points with table sums are set at random moments this far apart on average."""
    logical_dump_days: int = Field(default=7, ge=1, le=366)
    """With the WAL archived, the portable `pg_dump` copy is taken when the previous one is this
    many days old (and never when nothing changed)."""


class PostgresqlSource(DumpSource):
    """A PostgreSQL server: roles with `pg_dumpall --globals-only`, each database with `pg_dump`;
    with `wal`, also base backups and the WAL archive for point-in-time recovery."""

    hook: Literal["postgresql"] = "postgresql"
    port: int = Field(default=5432, ge=1, le=65535)
    user: str = "postgres"
    databases: list[str] = []
    """Databases to dump; empty means every database that accepts connections."""
    wal: WalArchive | None = None
    """Point-in-time recovery; the login needs the REPLICATION attribute (the superuser has it)."""


class MongodbSource(DumpSource):
    """A MongoDB server, dumped with `mongodump --archive` (oplog included on replica sets)."""

    hook: Literal["mongodb"] = "mongodb"
    port: int = Field(default=27017, ge=1, le=65535)
    user: str | None = None
    oplog: bool = True


class RedisSource(DumpSource):
    """A Redis server: its RDB snapshot fetched with `redis-cli --rdb` (a consistent fork)."""

    hook: Literal["redis"] = "redis"
    port: int = Field(default=6379, ge=1, le=65535)


SOURCE_MODELS: tuple[type[BaseModel], ...] = (
    FilesSource,
    PostgresqlSource,
    MongodbSource,
    RedisSource,
)
"""Every kind of data source, the one list the hook registry, the catalog's `BackupHook.kind` and
the plan's `Source` union derive from. A new kind of service is a model here and a module in
`napdms_ops/backup/hooks/` of the same name."""

HOOKS: tuple[str, ...] = tuple(model.model_fields["hook"].default for model in SOURCE_MODELS)
"""Hook names, which are also the modules of `napdms_ops.backup.hooks`."""
DUMP_HOOKS: tuple[str, ...] = tuple(
    model.model_fields["hook"].default for model in SOURCE_MODELS if issubclass(model, DumpSource)
)
"""Hooks that dump a server (a catalog `backup_hook`), rather than read volumes as files."""

# Union over a runtime tuple: the `|` spelling cannot take one.
Source = Annotated[Union[SOURCE_MODELS], Field(discriminator="hook")]  # type: ignore[valid-type]  # noqa: UP007


def dump_source(hook: str, **fields: object) -> DumpSource:
    """The plan's source for a server dumped by `hook`; fields a kind does not know are refused."""
    model = next(m for m in SOURCE_MODELS if m.model_fields["hook"].default == hook)
    return model.model_validate(fields)


class BackupPlan(StrictModel):
    """Everything one agent needs: what to back up, where, when, how long to keep it."""

    stack: str
    host_tag: str
    """restic `--host` of every snapshot, so several stacks may share one repository safely."""
    repository: Repository
    offsite: Offsite | None = None
    sources: list[Source] = Field(min_length=1)
    schedule: Schedule = Schedule()
    health: AgentHealth = AgentHealth()
    retention: Retention = Retention()
    checks: Checks = Checks()
    state_dir: str = Field(default="/state", pattern=r"^/")
    """Lock file, last-run record and metrics file live here (a volume of the agent)."""
    cache_dir: str | None = Field(default=None, pattern=r"^/")
    """restic's local cache; None keeps restic's default."""
    metrics_port: int = Field(default=9102, ge=1, le=65535)
    """Port the agent serves `/metrics` on for Prometheus."""
    rto_limit_s: float = Field(default=4 * 3600, gt=0)
    """The drill fails when the extrapolated restore time of the full data exceeds this."""

    @field_validator("sources")
    @classmethod
    def _unique_services(cls, value: list) -> list:
        names = [source.service for source in value]
        if len(names) != len(set(names)):
            raise ValueError(f"each service may appear once in sources, got {names}")
        return value

    @model_validator(mode="after")
    def _stall_outlasts_retry_delay(self) -> BackupPlan:
        if self.health.stall_s <= self.schedule.retry_delay_s:
            raise ValueError(
                f"health.stall_s ({self.health.stall_s:g}) must exceed schedule.retry_delay_s "
                f"({self.schedule.retry_delay_s:g}): a run waiting to retry is not hung"
            )
        return self


class PlanError(ValueError):
    """The plan file is missing or does not match `BackupPlan`."""


def load_plan(path: str | Path) -> BackupPlan:
    """Read and validate a plan file; errors name the file, the key and what to change."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise PlanError(
            f"backup plan {path}: cannot read it ({error.strerror}); "
            "the program writes it to the agent's config volume"
        ) from None
    try:
        return BackupPlan.model_validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        where = f"{key}: " if key else ""  # a check across keys names them in its message
        message = first["msg"].removeprefix("Value error, ")
        raise PlanError(f"backup plan {path}: {where}{message}") from None
