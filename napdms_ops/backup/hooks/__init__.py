"""One module per kind of data source, each with the same functions, called by name (borgmatic's
shape). The kinds are the plan's source models (`components.model.plan.SOURCE_MODELS`): a module
here is named after its model's `hook`, and `hook(name)` checks it keeps the `Hook` contract.

A new kind of service is one `*Source` model in the plan and one module here (plus its dump tool
in the agent's Dockerfile); the catalog's `BackupHook.kind` and this registry follow by themselves.
"""

from __future__ import annotations

import importlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from components.model.plan import HOOKS
from napdms_ops.backup.manifest import Part, ServiceRecord
from napdms_ops.backup.restic import BackupSummary, Restic


class HookError(RuntimeError):
    """A source could not be dumped or restored; the other services carry on."""


@dataclass(frozen=True)
class HookContext:
    """What a hook needs besides its source: the repository and how to label snapshots."""

    restic: Restic
    host_tag: str
    tags: Sequence[str]
    """Tags every snapshot of this run carries (stack, run id)."""
    workdir: str = field(default_factory=tempfile.gettempdir)
    """Scratch space (postgres drill clusters, restored dump files)."""
    verify_restore: bool = False
    """Have restic re-read every restored file and check it against the snapshot's hashes."""
    state_dir: str = field(default_factory=tempfile.gettempdir)
    """The agent's state directory (locks shared with the agent's own threads)."""
    previous: Mapping[str, ServiceRecord] = field(default_factory=dict)
    """Each service's newest successful record before this run (a hook may keep what did not
    change)."""

    def tags_for(self, service: str, *extra: str) -> list[str]:
        """This run's tags plus the service's."""
        return [*self.tags, f"service={service}", *extra]


@runtime_checkable
class Hook(Protocol):
    """What every hook module defines. `source` is the plan's model of the hook's kind.

    A restore extracts every part of a record (`restore`). A dump hook may also define
    `load(source, record, into, env=None)`, which loads the restored dump into a server (`env`:
    how to reach it; None: the source's own).
    """

    def backup(self, source: Any, context: HookContext) -> ServiceRecord:
        """Dump or read the source into the repository."""

    def verify(
        self, source: Any, record: ServiceRecord, context: HookContext, into: str
    ) -> list[str]:
        """Problems found in what a restore put under `into` (empty: it is what was backed up)."""


@cache
def hook(name: str) -> Hook:
    """The module implementing hook `name`."""
    if name not in HOOKS:
        raise HookError(f'no backup hook "{name}"; known hooks: {", ".join(HOOKS)}')
    module = importlib.import_module(f"{__name__}.{name}")
    if not isinstance(module, Hook):
        raise HookError(f"{module.__name__} lacks a function of the Hook contract (backup, verify)")
    return module


def part(summary: BackupSummary, path: str, files: int = 1) -> Part:
    """The record of one restic snapshot a hook made (a dump stream is one file)."""
    return Part(
        snapshot=summary.snapshot_id,
        path=path,
        files=files,
        bytes=summary.bytes_processed,
        bytes_added=summary.bytes_added,
    )


def record(source: Any, parts: list[Part], started: float, **facts: Any) -> ServiceRecord:
    """A successful service record: what every hook's `backup` returns. `started` is the
    `time.monotonic()` the hook began at; `facts` are hook-specific fields (tables, ...)."""
    return ServiceRecord(
        service=source.service,
        hook=source.hook,
        status="ok",
        parts=parts,
        seconds=time.monotonic() - started,
        **facts,
    )


def read_password(service: str, path: str | None) -> str | None:
    """The content of a source's password file (None when it has none).

    A missing file fails only that service.
    """
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise HookError(f"{service}: password file {path}: {error.strerror}") from None


def backup(source: Any, context: HookContext) -> ServiceRecord:
    """Back up one source with its hook."""
    return hook(source.hook).backup(source, context)


def restore(source: Any, record: ServiceRecord, context: HookContext, into: str) -> None:
    """Extract each snapshot of one service's record under `into` (dump hooks' files land there
    for their `load`); a PostgreSQL base backup is left to point-in-time recovery."""
    for each in record.logical_parts:
        context.restic.restore(each.snapshot, into, verify=context.verify_restore)


def verify(source: Any, record: ServiceRecord, context: HookContext, into: str) -> list[str]:
    """Check one restored service against what was recorded at backup time."""
    return hook(source.hook).verify(source, record, context, into)
