"""The restore drill: restore the latest run into scratch space, prove it is intact, time it.

Integrity: restic re-reads every restored file against the snapshot's hashes; file services
must match the file count and bytes read at backup time; databases are loaded into a scratch
PostgreSQL and every table's row count and checksum must equal those taken at dump time. The
measured rate gives the restore time of the whole data set; over the plan's limit (4 h) fails.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from components.model.plan import BackupPlan
from napdms_ops.backup import hooks
from napdms_ops.backup.hooks import HookError
from napdms_ops.backup.manifest import manifests
from napdms_ops.backup.restore import select
from napdms_ops.backup.run import context_for, repository


class DrillReport(BaseModel):
    """The drill's verdict and measurements."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    services: list[str]
    restored_bytes: int
    restore_seconds: float
    verify_seconds: float
    bytes_per_second: float
    data_bytes: int
    """The size the RTO is extrapolated to (the full data set)."""
    rto_seconds: float
    rto_limit_seconds: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        """Intact, and fast enough."""
        return not self.problems and self.rto_seconds <= self.rto_limit_seconds


def drill(
    plan: BackupPlan,
    snapshot: str = "latest",
    workdir: str | None = None,
    data_bytes: int | None = None,
) -> DrillReport:
    """Restore `snapshot` into a scratch directory, verify it, and extrapolate the RTO."""
    restic = repository(plan)
    manifest = select(manifests(plan, restic), snapshot, (), plan.schedule.timezone)
    sources = {source.service: source for source in plan.sources}
    scratch = Path(tempfile.mkdtemp(prefix="napdms-drill-", dir=workdir))
    # The scratch PostgreSQL runs as its own user and must reach its directory below this one.
    scratch.chmod(0o711)
    try:
        into = scratch / "restore"
        into.mkdir()
        context = context_for(
            plan, restic, manifest.run_id, workdir=str(scratch), verify_restore=True
        )
        started = time.monotonic()
        for name, record in manifest.services.items():
            hooks.restore(sources[name], record, context, str(into))
        restored = time.monotonic()
        problems = []
        for name, record in manifest.services.items():
            try:
                problems += hooks.verify(sources[name], record, context, str(into))
            except HookError as error:
                problems.append(str(error))
        finished = time.monotonic()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = max(finished - started, 1e-6)
    rate = manifest.bytes / total
    size = data_bytes if data_bytes is not None else manifest.bytes
    return DrillReport(
        run_id=manifest.run_id,
        services=list(manifest.services),
        restored_bytes=manifest.bytes,
        restore_seconds=restored - started,
        verify_seconds=finished - restored,
        bytes_per_second=rate,
        data_bytes=size,
        rto_seconds=size / rate if rate else float("inf"),
        rto_limit_seconds=plan.rto_limit_s,
        problems=problems,
    )
