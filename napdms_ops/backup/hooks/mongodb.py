"""MongoDB (RocketChat): `mongodump --archive`.

With the oplog on replica sets, for a point in time. The server runs with access control: the
hook logs in as the plan's user (defined in `admin`; the catalog names the root user), its
password read from the plan's file and handed to the tool in a private `--config` file.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from components.model.plan import MongodbSource
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import HookContext, HookError, read_password
from napdms_ops.backup.manifest import ServiceRecord
from napdms_ops.backup.restic import CommandFailed


@contextmanager
def _config(source: MongodbSource) -> Iterator[list[str]]:
    """Connection arguments; the password goes through a private config file (the tools'
    `--config`, YAML), never argv or the environment. The user is defined in `admin`."""
    argv = ["--host", source.host, "--port", str(source.port)]
    if not source.user:
        yield argv
        return
    password = read_password(source.service, source.password_file) or ""
    # mkstemp: created 0600 before anything is written; removed when the tool is done.
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as config:
        os.chmod(config.name, 0o600)
        # A JSON string is a YAML double-quoted scalar: any character survives.
        config.write(f"password: {json.dumps(password)}\n")
        config.flush()
        yield [
            *argv,
            "--username",
            source.user,
            "--authenticationDatabase",
            "admin",
            f"--config={config.name}",
        ]


def backup(source: MongodbSource, context: HookContext) -> ServiceRecord:
    """Every database as one archive, `/<service>/dump.archive`."""
    started = time.monotonic()
    path = f"/{source.service}/dump.archive"
    with _config(source) as connection:
        command = ["mongodump", *connection, "--archive"] + (["--oplog"] if source.oplog else [])
        try:
            summary = context.restic.backup_command(
                command, dict(os.environ), path, context.host_tag, context.tags_for(source.service)
            )
        except CommandFailed as error:
            if source.oplog and "oplog" in str(error):
                raise HookError(
                    f"{source.service}: {error}; a standalone server has no oplog: set oplog false"
                ) from None
            raise HookError(f"{source.service}: {error}") from None
    return hooks.record(source, [hooks.part(summary, path)], started)


def load(
    source: MongodbSource, record: ServiceRecord, into: str, env: Mapping[str, str] | None = None
) -> None:
    """Replay the restored archive (`restore` puts it under `into/<service>/`) into the server the
    source names, `mongorestore --drop`; `env` adds to the tool's environment."""
    with _config(source) as connection:
        archive = Path(into) / source.service / "dump.archive"
        argv = ["mongorestore", *connection, f"--archive={archive}", "--drop"] + (
            ["--oplogReplay"] if source.oplog else []
        )
        done = subprocess.run(argv, capture_output=True, env={**os.environ, **(env or {})})
        if done.returncode != 0:
            last_lines = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
            raise HookError(f"{source.service}: mongorestore: {last_lines}")


def verify(
    source: MongodbSource, record: ServiceRecord, context: HookContext, into: str
) -> list[str]:
    """The restored archive has the recorded size (restic checked its content hashes)."""
    problems = []
    for part in record.parts:
        restored = Path(into) / part.path.lstrip("/")
        if not restored.is_file() or restored.stat().st_size != part.bytes:
            problems.append(f"{source.service}: {part.path} missing or not {part.bytes} bytes")
    return problems
