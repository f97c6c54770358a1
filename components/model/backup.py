"""A stack's `backup:` section: where, when and how long the backup agent keeps its snapshots.

The catalog (the agent's plan renderer) and the stack settings both read it, so it sits below
both; its retention, checks and offsite parts are the agent's own plan models.
"""

from __future__ import annotations

import posixpath
import re
from fnmatch import fnmatch
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from components.model.addresses import login_problem, quoted
from components.model.plan import Checks, OffsiteBucket, Retention
from components.model.strict import StrictModel

_CRON_FIELD = re.compile(r"^(\*|\d{1,2})$")
_SFTP_REPOSITORY = re.compile(r"sftp:(?P<user>[^@\s/:]+)@(?P<host>[^@\s/:]+):(?P<path>/\S*)")
_LOCAL_REPOSITORY = re.compile(r"/[^\s:]*")
_SYSTEM_DIRS = ("/tmp", "/var/tmp", "/run", "/dev", "/proc", "/sys", "/etc", "/usr", "/bin")
"""Directories a repository may never be in: emptied at boot, runtime state, or the system."""
MAX_RETRY_DELAY_S = 6 * 3600
_KNOWN_HOSTS_KEY_TYPES = re.compile(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+)$")


class BackupSettings(StrictModel):
    """When and where the backup agent sends its encrypted snapshots."""

    repository: str
    """restic repository: `sftp:user@asustor:/path` (staging, prod; its private key is the encrypted
    config key `backup_ssh_key`), or an absolute path inside the agent (dev)."""
    sftp_known_hosts: str | None = None
    """The ASUSTOR's host key as known_hosts line(s) (`ssh-keyscan -t ed25519 <host>`, checked by
    hand once); required with an sftp repository, so a changed host key stops the backup."""
    schedule: str = "0 2 * * *"
    """Cron line; the agent honours minute and hour."""
    timezone: str = "Europe/Berlin"
    retries: int = Field(default=3, ge=0, le=10)
    retry_delay_s: int = Field(default=300, ge=1, le=MAX_RETRY_DELAY_S)
    """Seconds between attempts; at most 6 hours, so the retries end before the next night."""
    retention: Retention = Retention()
    checks: Checks = Checks()
    offsite: OffsiteBucket | None = None

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        sftp = _SFTP_REPOSITORY.fullmatch(value)
        if not (sftp or _LOCAL_REPOSITORY.fullmatch(value)):
            raise ValueError(
                f"{quoted(value)} is not a repository the agent can reach; use "
                '"sftp:backup@asustor:/backups/napdms" '
                "or an absolute path inside the agent (S3 goes under backup.offsite)"
            )
        if sftp:
            problem = login_problem(sftp["user"], sftp["host"])
            if problem:
                raise ValueError(
                    f"{problem}; use the ASUSTOR's backup login, e.g. "
                    '"sftp:backup@asustor.example.org:/volume1/backup/napdms"'
                )
        path = sftp["path"] if sftp else value
        if posixpath.normpath(path) != path or path.startswith("//"):
            raise ValueError(
                f"{quoted(path)} is not a plain path; write it as "
                f"{quoted(posixpath.normpath(path).replace('//', '/'))}"
            )
        system = next((d for d in _SYSTEM_DIRS if path == d or path.startswith(f"{d}/")), None)
        if path == "/" or system:
            where = "is the whole filesystem" if path == "/" else f"lies in {system}"
            raise ValueError(
                f"{quoted(path)} {where}, which the system empties or owns; use a directory of "
                'its own such as "/repository" (or "/volume1/backup/napdms" on the ASUSTOR)'
            )
        return value

    @field_validator("sftp_known_hosts")
    @classmethod
    def _known_hosts(cls, value: str | None) -> str | None:
        for line in known_hosts_lines(value or ""):
            fields = line.split()
            if fields[0].startswith("@"):
                fields = fields[1:]
            if len(fields) < 3 or not _KNOWN_HOSTS_KEY_TYPES.match(fields[1]):
                raise ValueError(
                    f'"{line}" is not a known_hosts line; use "<host> ssh-ed25519 AAAA..." '
                    "as ssh-keyscan prints it"
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
            raise ValueError(
                f'"{value}" is not an IANA time zone; use e.g. "Europe/Berlin"'
            ) from None
        return value

    @property
    def time_of_day(self) -> str:
        """HH:MM the schedule runs at."""
        minute, hour = self.schedule.split()[:2]
        return f"{int(hour):02d}:{int(minute):02d}"

    def known_hosts_problems(self) -> list[str]:
        """What is wrong with `sftp_known_hosts` for this repository, as `backup.*` problem
        lines."""
        host = self.sftp_host
        lines = known_hosts_lines(self.sftp_known_hosts or "")
        if host and not lines:
            return [
                f"backup.sftp_known_hosts: required for the sftp repository on {host}; "
                f"add its host key line (`ssh-keyscan -t ed25519 {host}`, checked by hand) "
                "so a changed key stops the backup"
            ]
        if host and not any(_names_host(line, host) for line in lines):
            return [
                f"backup.sftp_known_hosts: no line names {host}, the host of backup.repository; "
                f"add the line `ssh-keyscan -t ed25519 {host}` prints"
            ]
        return []

    @property
    def sftp_host(self) -> str | None:
        """The host of an sftp repository, None for a local one."""
        match = _SFTP_REPOSITORY.fullmatch(self.repository)
        return match["host"] if match else None


def known_hosts_lines(text: str) -> list[str]:
    """The non-comment lines of a known_hosts text."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _names_host(line: str, host: str) -> bool:
    """Whether a known_hosts line applies to `host` (hashed names cannot be read: ssh decides)."""
    fields = line.split()
    patterns = fields[1] if fields[0].startswith("@") else fields[0]
    if patterns.startswith("|1|"):
        return True
    return any(
        fnmatch(host, pattern) for pattern in patterns.split(",") if not pattern.startswith("!")
    )
