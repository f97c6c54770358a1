"""Redis: the RDB snapshot fetched with `redis-cli --rdb` (the server forks a consistent copy)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from components.model.plan import RedisSource
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import HookContext, HookError, read_password
from napdms_ops.backup.manifest import ServiceRecord
from napdms_ops.backup.restic import CommandFailed

_MAGIC = b"REDIS"


def _environment(source: RedisSource) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    password = read_password(source.service, source.password_file)
    if password is not None:
        # REDISCLI_AUTH keeps the password out of the process list.
        env["REDISCLI_AUTH"] = password
    return env


def backup(source: RedisSource, context: HookContext) -> ServiceRecord:
    """The server's current dataset as `/<service>/dump.rdb`."""
    started = time.monotonic()
    path = f"/{source.service}/dump.rdb"
    try:
        summary = context.restic.backup_command(
            [
                "redis-cli",
                "-h",
                source.host,
                "-p",
                str(source.port),
                "--no-auth-warning",
                "--rdb",
                "-",
            ],
            _environment(source),
            path,
            context.host_tag,
            context.tags_for(source.service),
        )
    except CommandFailed as error:
        raise HookError(f"{source.service}: {error}") from None
    if summary.bytes_processed < len(_MAGIC):
        context.restic.forget(summary.snapshot_id)
        raise HookError(
            f"{source.service}: redis-cli wrote {summary.bytes_processed} bytes, not an RDB file"
        )
    return hooks.record(source, [hooks.part(summary, path)], started)


def verify(
    source: RedisSource, record: ServiceRecord, context: HookContext, into: str
) -> list[str]:
    """The restored file has the recorded size and starts like an RDB file."""
    problems = []
    for part in record.parts:
        restored = Path(into) / part.path.lstrip("/")
        if not restored.is_file():
            problems.append(f"{source.service}: {part.path} was not restored")
            continue
        if restored.stat().st_size != part.bytes:
            problems.append(
                f"{source.service}: {part.path} has {restored.stat().st_size} bytes, "
                f"the backup read {part.bytes}"
            )
        with restored.open("rb") as handle:
            if handle.read(len(_MAGIC)) != _MAGIC:
                problems.append(f"{source.service}: {part.path} is not an RDB file")
    return problems
