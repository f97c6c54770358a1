"""What one backup run recorded: per service, its snapshots and the facts a restore must reproduce.

The manifest is itself stored in the repository, as the run's last snapshot. A run without a
manifest never finished, so restores and drills never pick its snapshots by accident.

What we write is strict (a field no model knows is refused); what we read is forward-compatible:
a newer agent's extra fields are ignored, and a manifest that cannot be read at all (not JSON,
wrong types, fields missing) is logged, counted and skipped, never a reason to stop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationInfo, model_validator

from components.model.plan import BackupPlan
from napdms_ops.backup.restic import Restic, Snapshot

MANIFEST_PATH = "/napdms-run/manifest.json"
MANIFEST_TAG = "napdms-manifest"
READING = {"reading": True}
"""Validation context of a manifest read back: unknown fields are dropped, not refused."""

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _forward_compatible(cls, data: Any, info: ValidationInfo) -> Any:
        """Reading (context `READING`), keep only the fields this agent knows, at every level."""
        if isinstance(data, dict) and info.context and info.context.get("reading"):
            return {key: value for key, value in data.items() if key in cls.model_fields}
        return data


class Part(_Strict):
    """One snapshot of a service's backup: a set of directories, or one dump stream."""

    snapshot: str
    path: str
    """The directory (files hook) or file name (dump hooks) as stored in the snapshot."""
    files: int
    bytes: int
    """Bytes read from the source."""
    bytes_added: int
    """Bytes the repository grew by (after deduplication and compression)."""


class TableSum(_Strict):
    """Row count and an order-independent checksum of one table, taken in the dump's snapshot."""

    rows: int
    checksum: str


class BaseBackup(_Strict):
    """What point-in-time recovery needs to know of a PostgreSQL base backup (its part holds the
    `pg_basebackup` tar)."""

    part: str
    """The snapshot id of the tar's part."""
    start_wal: str
    """WAL file the backup's redo starts in (or an earlier one): recovery replays from here."""
    finished: float
    """Unix time the backup ended: the earliest moment it can recover to."""


class ServiceRecord(_Strict):
    """How one service's backup went."""

    service: str
    hook: str
    status: Literal["ok", "failed"]
    error: str | None = None
    parts: list[Part] = []
    tables: dict[str, dict[str, TableSum]] = {}
    """Database -> table -> sums, for hooks that dump databases."""
    checksum_method: str | None = None
    """How `tables` sums were computed, so a drill never compares sums of two methods."""
    seconds: float = 0.0
    base: BaseBackup | None = None
    """PostgreSQL with its WAL archived: the run's physical base backup."""
    dumped: float | None = None
    """When the logical dump among `parts` was taken (an unchanged database keeps an older one)."""
    changes: str | None = None
    """PostgreSQL: the server's count of rows written (inserted, updated, deleted) in every
    database when the run read it; the same count at the next run means nothing changed."""

    @property
    def bytes(self) -> int:
        """Bytes read from the source across all parts."""
        return sum(part.bytes for part in self.parts)

    @property
    def logical_parts(self) -> list[Part]:
        """The parts a restore of the record extracts: all but a base backup (which only a
        point-in-time recovery reads)."""
        base = self.base.part if self.base is not None else None
        return [part for part in self.parts if part.snapshot != base]


class RunManifest(_Strict):
    """One finished run of the agent."""

    run_id: str
    stack: str
    host_tag: str
    started: float
    """Unix time the run began."""
    finished: float
    attempts: int
    services: dict[str, ServiceRecord]
    snapshot: str | None = None
    """The manifest's own snapshot id (filled in when read back)."""

    @property
    def ok(self) -> bool:
        """Every service was backed up."""
        return all(record.status == "ok" for record in self.services.values())

    @property
    def bytes(self) -> int:
        """Bytes read from all sources."""
        return sum(record.bytes for record in self.services.values())

    @property
    def bytes_added(self) -> int:
        """Bytes the repository grew by."""
        return sum(part.bytes_added for record in self.services.values() for part in record.parts)

    @classmethod
    def read(cls, text: str | bytes) -> RunManifest:
        """A stored manifest, written by this agent or a newer one (its extra fields ignored)."""
        return cls.model_validate_json(text, context=READING)


@dataclass
class Unreadable:
    """A manifest snapshot whose file is no manifest this agent can read."""

    snapshot: str
    run_id: str | None
    """The run the snapshot's `run=` tag names (its parts are kept, never pruned by guess)."""
    error: str


@dataclass
class Listing:
    """The finished runs of a stack, and the manifests that could not be read."""

    runs: list[RunManifest]
    unreadable: list[Unreadable] = field(default_factory=list)


def manifests(
    plan: BackupPlan, restic: Restic, listed: Sequence[Snapshot] | None = None
) -> list[RunManifest]:
    """Every finished run of the plan's stack that can be read, oldest first (see `listing`)."""
    return listing(plan, restic, listed).runs


def listing(plan: BackupPlan, restic: Restic, listed: Sequence[Snapshot] | None = None) -> Listing:
    """Every finished run of the plan's stack, oldest first (read once, then cached: snapshots
    never change), and the manifests that could not be read, each logged once per listing.
    `listed`: the stack's snapshots, when the caller has them already."""
    if listed is None:
        listed = restic.snapshots(host=plan.host_tag, tags=[MANIFEST_TAG])
    cache = Path(plan.state_dir) / "manifests"
    found = []
    unreadable = []
    for snapshot in listed:
        if MANIFEST_TAG not in snapshot.tags:
            continue
        cached = cache / f"{snapshot.id}.json"
        try:
            manifest = RunManifest.read(cached.read_text())
        except (OSError, ValueError):
            try:
                manifest = RunManifest.read(restic.dump(snapshot.id, MANIFEST_PATH))
            except ValueError as error:  # not JSON, not UTF-8, or not a manifest (pydantic)
                reason = " ".join(str(error).split())[:300]
                log.warning(
                    "backup manifest %s in snapshot %s (run %s) is unreadable, skipped: %s",
                    MANIFEST_PATH,
                    snapshot.id[:8],
                    snapshot.tag("run") or "unknown",
                    reason,
                )
                unreadable.append(Unreadable(snapshot.id, snapshot.tag("run"), reason))
                continue
            manifest.snapshot = snapshot.id
            cache.mkdir(parents=True, exist_ok=True)
            cached.write_text(manifest.model_dump_json())
        found.append(manifest)
    return Listing(sorted(found, key=lambda m: m.started), unreadable)
