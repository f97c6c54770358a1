"""The restore drill: restore the latest run into scratch space, prove it is intact, time it;
and recover each archived PostgreSQL to a random restore point of the last day.

Integrity: restic re-reads every restored file against the snapshot's hashes; file services
must match the file count and bytes read at backup time; databases are loaded into a scratch
PostgreSQL and every table's row count and checksum must equal those taken at dump time. The
measured rate gives the restore time of the whole data set; over the plan's limit (4 h) fails.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from components.model.plan import BackupPlan, PostgresqlSource
from napdms_ops.backup import hooks, pitr
from napdms_ops.backup.hooks import HookError, postgresql
from napdms_ops.backup.manifest import manifests
from napdms_ops.backup.restic import Restic
from napdms_ops.backup.restore import select
from napdms_ops.backup.run import context_for, repository


class PitrDrill(BaseModel):
    """A point-in-time recovery the drill made, to a restore point of the last day."""

    model_config = ConfigDict(extra="forbid")

    service: str
    restore_point: str
    moment: float
    base_run: str
    wal_files: int
    seconds: float


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
    pitr: list[PitrDrill] = []

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
        recoveries = []
        for source in plan.sources:
            # The run's services: a drill of a run without the database does not judge its WAL.
            if (
                isinstance(source, PostgresqlSource)
                and source.wal is not None
                and source.service in manifest.services
            ):
                recoveries += _drill_pitr(plan, source, restic, scratch, problems)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = max(finished - started, 1e-6)
    restored_bytes = sum(
        part.bytes for record in manifest.services.values() for part in record.logical_parts
    )
    rate = restored_bytes / total
    size = data_bytes if data_bytes is not None else restored_bytes
    return DrillReport(
        run_id=manifest.run_id,
        services=list(manifest.services),
        restored_bytes=restored_bytes,
        restore_seconds=restored - started,
        verify_seconds=finished - restored,
        bytes_per_second=rate,
        data_bytes=size,
        rto_seconds=size / rate if rate else float("inf"),
        rto_limit_seconds=plan.rto_limit_s,
        problems=problems,
        pitr=recoveries,
    )


def _drill_pitr(
    plan: BackupPlan,
    source: PostgresqlSource,
    restic: Restic,
    scratch: Path,
    problems: list[str],
    now: float | None = None,
) -> list[PitrDrill]:
    """Recover `source` to a random restore point of the last day and compare every table's
    sums with those taken at that point; problems are appended."""
    now = time.time() if now is None else now
    recent = [
        marker
        for _, marker in pitr.read_markers(restic, plan.host_tag, source.service)
        if marker.time >= now - 86400
    ]
    if not recent:
        problems.append(
            f"{source.service}: no restore point in the last day to recover to; the agent sets "
            "one a day while it archives the WAL (napdms_backup_pg_restore_point_* metrics)"
        )
        return []
    marker = random.choice(recent)
    found: list[str] = []

    def compare(env: dict[str, str]) -> None:
        restored = postgresql.server_sums(env, list(marker.tables))
        found.extend(postgresql.compare_sums(source.service, marker.tables, restored))

    try:
        recovery = pitr.recover(
            plan,
            source,
            restic,
            str(scratch / f"pitr-data-{source.service}"),
            str(scratch),
            marker=marker,
            inspect=compare,
        )
    except (pitr.PitrError, HookError) as error:
        problems.append(f"{source.service}: point-in-time recovery to {marker.name}: {error}")
        return []
    problems += found
    return [
        PitrDrill(
            service=source.service,
            restore_point=marker.name,
            moment=marker.time,
            base_run=recovery.base_run,
            wal_files=recovery.wal_files,
            seconds=recovery.seconds,
        )
    ]
