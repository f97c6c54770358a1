"""Volume data as files: Gitea repositories, n8n data, RocketChat uploads, NAP-DMS documents."""

from __future__ import annotations

import os
import time
from pathlib import Path

from napdms_ops.backup.hooks import HookContext, HookError, restore_parts
from napdms_ops.backup.manifest import Part, ServiceRecord
from napdms_ops.backup.plan import FilesSource


def backup(source: FilesSource, context: HookContext) -> ServiceRecord:
    """One snapshot of all the service's volumes."""
    missing = [path for path in source.paths if not Path(path).is_dir()]
    if missing:
        raise HookError(f"{source.service}: {', '.join(missing)} not mounted in the agent; run `pulumi up` so the agent mounts the volume")
    started = time.monotonic()
    summary = context.restic.backup_paths(source.paths, context.host_tag, context.tags_for(source.service))
    part = Part(
        snapshot=summary.snapshot_id,
        path=",".join(source.paths),
        files=summary.files,
        bytes=summary.bytes_processed,
        bytes_added=summary.bytes_added,
    )
    return ServiceRecord(service=source.service, hook="files", status="ok", parts=[part], seconds=time.monotonic() - started)


def restore(source: FilesSource, record: ServiceRecord, context: HookContext, into: str) -> None:
    """Recreate the volumes' files (owners, modes, times) under `into`."""
    restore_parts(record, context, into)


def verify(source: FilesSource, record: ServiceRecord, context: HookContext, into: str) -> list[str]:
    """Compare the restored files' count and bytes with what the backup read."""
    problems = []
    for part in record.parts:
        files, size = 0, 0
        for path in part.path.split(","):
            for root, _dirs, names in os.walk(Path(into) / path.lstrip("/")):
                for name in names:
                    entry = Path(root) / name
                    if entry.is_file() and not entry.is_symlink():
                        files += 1
                        size += entry.stat().st_size
        if (files, size) != (part.files, part.bytes):
            problems.append(
                f"{source.service}: restored {files} files / {size} bytes, the backup read {part.files} / {part.bytes}"
            )
    return problems
