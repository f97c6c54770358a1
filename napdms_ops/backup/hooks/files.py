"""Volume data as files: Gitea repositories, n8n data, RocketChat uploads, NAP-DMS documents."""

from __future__ import annotations

import os
import time
from pathlib import Path

from components.model.plan import FilesSource
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import HookContext, HookError
from napdms_ops.backup.manifest import ServiceRecord


def backup(source: FilesSource, context: HookContext) -> ServiceRecord:
    """One snapshot of all the service's volumes."""
    missing = [path for path in source.paths if not Path(path).is_dir()]
    if missing:
        raise HookError(
            f"{source.service}: {', '.join(missing)} not mounted in the agent; "
            "run `pulumi up` so the agent mounts the volume"
        )
    started = time.monotonic()
    summary = context.restic.backup_paths(
        source.paths, context.host_tag, context.tags_for(source.service)
    )
    return hooks.record(
        source, [hooks.part(summary, ",".join(source.paths), files=summary.files)], started
    )


def verify(
    source: FilesSource, record: ServiceRecord, context: HookContext, into: str
) -> list[str]:
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
                f"{source.service}: restored {files} files / {size} bytes, "
                f"the backup read {part.files} / {part.bytes}"
            )
    return problems
