"""One module per kind of data source, each with the same three functions, called by name.

    backup(source, context) -> ServiceRecord     dump or read the source into the repository
    restore(source, record, context, into)       put the record's data back under `into`
    verify(source, record, context, into)        problems found in what `restore` put there

A new kind of service is one new module here and one new `*Source` model in the plan.
"""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Optional, Sequence

from napdms_ops.backup.restic import Restic

HOOKS = ("files", "postgresql", "mongodb", "redis")


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

    def tags_for(self, service: str, *extra: str) -> list[str]:
        """This run's tags plus the service's."""
        return [*self.tags, f"service={service}", *extra]


def read_password(service: str, path: Optional[str]) -> Optional[str]:
    """The content of a source's password file (None when it has none); a missing file fails only that service."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise HookError(f"{service}: password file {path}: {error.strerror}") from None


def restore_parts(record, context: HookContext, into: str) -> None:
    """Extract each snapshot of `record` under `into`: what every hook's `restore` starts with."""
    for part in record.parts:
        context.restic.restore(part.snapshot, into, verify=context.verify_restore)


def module(hook: str) -> ModuleType:
    """The module implementing `hook`."""
    if hook not in HOOKS:
        raise HookError(f'no backup hook "{hook}"; known hooks: {", ".join(HOOKS)}')
    return importlib.import_module(f"napdms_ops.backup.hooks.{hook}")


def backup(source, context: HookContext):
    """Back up one source with its hook."""
    return module(source.hook).backup(source, context)


def restore(source, record, context: HookContext, into: str) -> None:
    """Restore one service's record with its hook."""
    module(source.hook).restore(source, record, context, into)


def verify(source, record, context: HookContext, into: str) -> list[str]:
    """Check one restored service against what was recorded at backup time."""
    return module(source.hook).verify(source, record, context, into)
