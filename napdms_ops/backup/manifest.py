"""What one backup run recorded: per service, its snapshots and the facts a restore must reproduce.

The manifest is itself stored in the repository, as the run's last snapshot. A run without a
manifest never finished, so restores and drills never pick its snapshots by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from components.model.plan import BackupPlan
from napdms_ops.backup.restic import Restic, Snapshot

MANIFEST_PATH = "/napdms-run/manifest.json"
MANIFEST_TAG = "napdms-manifest"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


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

    @property
    def bytes(self) -> int:
        """Bytes read from the source across all parts."""
        return sum(part.bytes for part in self.parts)


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


def manifests(
    plan: BackupPlan, restic: Restic, listed: Sequence[Snapshot] | None = None
) -> list[RunManifest]:
    """Every finished run of the plan's stack, oldest first (read once, then cached: snapshots
    never change). `listed`: the stack's snapshots, when the caller has them already."""
    if listed is None:
        listed = restic.snapshots(host=plan.host_tag, tags=[MANIFEST_TAG])
    cache = Path(plan.state_dir) / "manifests"
    found = []
    for snapshot in listed:
        if MANIFEST_TAG not in snapshot.tags:
            continue
        cached = cache / f"{snapshot.id}.json"
        try:
            manifest = RunManifest.model_validate_json(cached.read_text())
        except (OSError, ValueError):
            manifest = RunManifest.model_validate_json(restic.dump(snapshot.id, MANIFEST_PATH))
            manifest.snapshot = snapshot.id
            cache.mkdir(parents=True, exist_ok=True)
            cached.write_text(manifest.model_dump_json())
        found.append(manifest)
    return sorted(found, key=lambda m: m.started)
