"""One backup run: lock, dump each service through its hook, retry what failed, record the run.

A run is a success only when every service was backed up *and* its manifest reached the
repository. Snapshots of an interrupted attempt either never came to exist (restic writes a
snapshot last) or belong to services that finished; the retry backs up only what is missing.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from components.model.plan import BackupPlan, PostgresqlSource
from napdms_ops.backup import hooks, pitr, wal
from napdms_ops.backup.hooks import HookContext, HookError
from napdms_ops.backup.manifest import (
    MANIFEST_PATH,
    MANIFEST_TAG,
    RunManifest,
    ServiceRecord,
    Unreadable,
    listing,
    manifests,
)
from napdms_ops.backup.metrics import RunState, read_state, write_state
from napdms_ops.backup.restic import Restic, ResticError, moment_of

log = logging.getLogger(__name__)


class RunLocked(RuntimeError):
    """Another run of the same plan is in progress."""


class RunLock:
    """An exclusive, non-blocking lock file in the state directory; the kernel drops it if we
    die."""

    def __init__(self, state_dir: str):
        self.path = Path(state_dir) / "run.lock"
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunLocked(
                f"a backup run is already in progress ({holder}); wait for it, this run is skipped"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()


@dataclass
class RunOutcome:
    """What `run_backup` did."""

    state: RunState
    manifest: RunManifest | None


def repository(plan: BackupPlan) -> Restic:
    """The plan's primary repository."""
    return Restic(plan.repository, plan.cache_dir)


def context_for(
    plan: BackupPlan,
    restic: Restic,
    run_id: str,
    workdir: str | None = None,
    verify_restore: bool = False,
    previous: Mapping[str, ServiceRecord] | None = None,
) -> HookContext:
    """The hook context of a run (or of a restore of run `run_id`)."""
    return HookContext(
        restic=restic,
        host_tag=plan.host_tag,
        tags=["napdms", f"stack={plan.stack}", f"run={run_id}"],
        workdir=workdir or tempfile.gettempdir(),
        verify_restore=verify_restore,
        state_dir=plan.state_dir,
        previous=previous or {},
    )


def previous_records(plan: BackupPlan, restic: Restic) -> dict[str, ServiceRecord]:
    """Each PostgreSQL source's newest successful record (its hook keeps what did not change);
    empty when the repository cannot be listed (the run itself then says why)."""
    wanted = {s.service for s in plan.sources if isinstance(s, PostgresqlSource)}
    if not wanted:
        return {}
    try:
        found = manifests(plan, restic)
    except ResticError:
        return {}
    return {
        name: run.services[name]
        for run in found
        for name in wanted
        if name in run.services and run.services[name].status == "ok"
    }


def open_repository(restic: Restic) -> None:
    """Check the key and create the repository on first use."""
    if not restic.exists():
        restic.init()


def run_backup(
    plan: BackupPlan,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> RunOutcome:
    """Back up every source of the plan with retries, then check, prune and copy offsite."""
    with RunLock(plan.state_dir):
        started = clock()
        run_id = (
            f"{dt.datetime.fromtimestamp(started, dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
        )
        restic = repository(plan)
        context = context_for(plan, restic, run_id, previous=previous_records(plan, restic))
        records: dict[str, ServiceRecord] = {}
        pending = list(plan.sources)
        manifest: RunManifest | None = None
        failure: ResticError | None = None
        attempts = 0
        initialised = False
        while True:
            attempts += 1
            failure = None
            try:
                # No separate "open" call (each restic process costs ~0.7 s): the first backup
                # opens the repository, a wrong key fails it before anything is written, and a
                # repository that is not there yet is created once.
                restic.check_password_file()
                for source in pending:
                    try:
                        records[source.service] = _back_up(source, context)
                    except ResticError as error:
                        if error.kind != "no-repository" or initialised:
                            raise
                        restic.init()
                        initialised = True
                        records[source.service] = _back_up(source, context)
                pending = [s for s in pending if records[s.service].status != "ok"]
                if not pending or attempts > plan.schedule.retries:
                    finished = RunManifest(
                        run_id=run_id,
                        stack=plan.stack,
                        host_tag=plan.host_tag,
                        started=started,
                        finished=clock(),
                        attempts=attempts,
                        services={s.service: records[s.service] for s in plan.sources},
                    )
                    finished.snapshot = _store(restic, finished, context)
                    manifest = finished
                    break
            except ResticError as error:
                failure = error
                if not error.retryable or attempts > plan.schedule.retries:
                    break
            sleep(plan.schedule.retry_delay_s)

        state = _state(plan, run_id, started, clock(), attempts, manifest, failure, records)
        if manifest is not None:
            with wal.repository_lock(plan.state_dir, exclusive=True):
                _maintain(plan, restic, manifest, state, clock)
        write_state(plan.state_dir, state)
        return RunOutcome(state=state, manifest=manifest)


def _back_up(source, context: HookContext) -> ServiceRecord:
    """One service; a dump failure or a transient restic failure marks only this service failed."""
    try:
        return hooks.backup(source, context)
    except HookError as error:
        return ServiceRecord(
            service=source.service, hook=source.hook, status="failed", error=str(error)
        )
    except ResticError as error:
        if not error.retryable:
            raise
        # The link may be back for the next service; if not, its own attempt says so quickly.
        return ServiceRecord(
            service=source.service, hook=source.hook, status="failed", error=str(error)
        )


def _store(restic: Restic, manifest: RunManifest, context: HookContext) -> str:
    summary = restic.backup_bytes(
        manifest.model_dump_json(indent=2).encode(),
        MANIFEST_PATH,
        context.host_tag,
        [*context.tags, MANIFEST_TAG],
    )
    return summary.snapshot_id


def _state(plan, run_id, started, finished, attempts, manifest, failure, records) -> RunState:
    previous = read_state(plan.state_dir)
    # A service counts as backed up only once the run's manifest made its snapshots restorable.
    backed_up = (
        {name for name, record in records.items() if record.status == "ok"}
        if manifest is not None
        else set()
    )
    service_last = dict(previous.service_last_success) if previous else {}
    service_last.update({service: finished for service in backed_up})
    success = manifest is not None and manifest.ok
    reason = error = None
    if manifest is None:
        reason = failure.kind if failure else "failed"
        error = str(failure) if failure else "the run did not finish"
    elif not manifest.ok:
        reason = "service-failed"
        error = "; ".join(
            r.error or r.service for r in manifest.services.values() if r.status != "ok"
        )
    return RunState(
        stack=plan.stack,
        run_id=run_id,
        started=started,
        finished=finished,
        success=success,
        reason=reason,
        error=error,
        attempts=attempts,
        bytes=manifest.bytes if manifest else 0,
        bytes_added=manifest.bytes_added if manifest else 0,
        services={source.service: source.service in backed_up for source in plan.sources},
        last_success=finished if success else (previous.last_success if previous else None),
        service_last_success=service_last,
        check_success=previous.check_success if previous else None,
        check_full=previous.check_full if previous else False,
        check_time=previous.check_time if previous else None,
        manifests_unreadable=previous.manifests_unreadable if previous else None,
    )


def crashed_state(plan: BackupPlan, started: float, finished: float, error: Exception) -> RunState:
    """Record a run that ended in an error the agent did not expect (reason `internal`), keeping
    what earlier runs recorded, so the metrics say so instead of going stale."""
    previous = read_state(plan.state_dir)
    state = RunState(
        stack=plan.stack,
        run_id=f"{dt.datetime.fromtimestamp(started, dt.UTC):%Y%m%dT%H%M%SZ}-crashed",
        started=started,
        finished=finished,
        success=False,
        reason="internal",
        error=f"{type(error).__name__}: {error}",
        services={source.service: False for source in plan.sources},
        **(
            previous.model_dump(
                include={
                    "last_success",
                    "service_last_success",
                    "check_success",
                    "check_full",
                    "check_time",
                    "offsite_success",
                    "manifests_unreadable",
                }
            )
            if previous
            else {}
        ),
    )
    write_state(plan.state_dir, state)
    return state


def _maintain(
    plan: BackupPlan, restic: Restic, manifest: RunManifest, state: RunState, clock
) -> None:
    """Retention, integrity check and the offsite copy, each recorded in `state`. Each step runs
    whatever the one before it raised: a fault in one never stops the others."""
    try:
        state.manifests_unreadable = len(prune(plan, restic))
    except Exception as error:
        _add_error(state, "retention", error)
    full = _local_day(plan, clock()) == plan.checks.full_on_day
    try:
        verify(plan, restic, full=full)
        state.check_success = True
    except Exception as error:
        state.check_success = False
        _add_error(state, "check", error)
    state.check_full = full
    state.check_time = clock()
    if plan.offsite is not None:
        try:
            copy_offsite(plan, restic, manifest)
            state.offsite_success = True
        except Exception as error:
            state.offsite_success = False
            _add_error(state, "offsite", error)


def _add_error(state: RunState, step: str, error: Exception) -> None:
    if not isinstance(error, ResticError):
        log.exception("backup %s failed unexpectedly", step, exc_info=error)
    state.error = f"{state.error}; {step}: {error}" if state.error else f"{step}: {error}"


def _local_day(plan: BackupPlan, now: float) -> int:
    return dt.datetime.fromtimestamp(now, ZoneInfo(plan.schedule.timezone)).day


def prune(plan: BackupPlan, restic: Restic) -> list[Unreadable]:
    """Apply the retention policy to whole runs, then free the space; returns the manifests that
    could not be read.

    restic's own `forget` would judge each part and each manifest apart, and could keep a day's
    parts while dropping the manifest that makes them restorable. So restic only chooses which
    manifests the policy keeps (`--dry-run`); we keep those runs' parts, plus, per service, the
    newest run in which it succeeded, and forget everything else of this stack. A manifest this
    agent cannot read, and every snapshot of its run, is kept: judging it is a newer agent's job.
    """
    retention = plan.retention
    chosen = json.loads(
        restic.run_unlocking(
            "forget",
            "--dry-run",
            "--json",
            "--host",
            plan.host_tag,
            "--tag",
            MANIFEST_TAG,
            "--keep-daily",
            str(retention.daily),
            "--keep-weekly",
            str(retention.weekly),
            "--keep-monthly",
            str(retention.monthly),
            action="forget",
        )
        or "[]"
    )
    kept_manifests = {
        snapshot["id"] for group in chosen or [] for snapshot in group.get("keep") or []
    }
    listed = restic.snapshots(host=plan.host_tag)
    found = listing(plan, restic, listed)
    runs = found.runs
    kept_runs = [run for run in runs if run.snapshot in kept_manifests]
    for service in {name for run in runs for name in run.services}:
        good = [
            run
            for run in runs
            if run.services.get(service) and run.services[service].status == "ok"
        ]
        if good:
            kept_runs.append(good[-1])
    keep = {run.snapshot for run in kept_runs} | {
        part.snapshot
        for run in kept_runs
        for record in run.services.values()
        for part in record.parts
    }
    keep |= {unreadable.snapshot for unreadable in found.unreadable}
    unjudged_runs = {u.run_id for u in found.unreadable if u.run_id}
    safety_horizon = time.time() - retention.daily * 86400
    doomed = [
        snapshot.id
        for snapshot in listed
        if not any(snapshot.is_(kept) for kept in keep)
        and snapshot.tag("run") not in unjudged_runs
        and not ("safety" in snapshot.tags and moment_of(snapshot.time) > safety_horizon)
        and not any(kind in snapshot.tags for kind in pitr.PITR_KINDS)
    ]
    for source in plan.sources:
        if isinstance(source, PostgresqlSource) and source.wal is not None:
            kept_bases = [base for _, base in pitr.bases(kept_runs, source.service)]
            doomed += pitr.retain(restic, plan.host_tag, source.service, kept_bases, forget=False)
    if doomed:
        restic.run_unlocking("forget", "--prune", *doomed, action="forget")
    return found.unreadable


def verify(plan: BackupPlan, restic: Restic, full: bool = False) -> None:
    """`restic check`, reading a subset of the data (or all of it with `full`)."""
    reading = ["--read-data"] if full else ["--read-data-subset", plan.checks.daily_subset]
    restic.run_unlocking("check", *reading, action="check")


def offsite_repository(plan: BackupPlan) -> Restic:
    """The plan's offsite (S3) repository."""
    return Restic(plan.offsite.repository, plan.cache_dir)


def copy_offsite(plan: BackupPlan, restic: Restic, manifest: RunManifest) -> None:
    """Copy the run's snapshots, manifest last, into the offsite repository and apply retention
    there."""
    target = offsite_repository(plan)
    if not target.exists():
        target.init(copy_chunker_from=restic)
    ids = [part.snapshot for record in manifest.services.values() for part in record.parts]
    ids += pitr.archive_snapshots(plan, restic)
    target.run(
        *restic.options(),
        "copy",
        "--from-repo",
        restic.url,
        "--from-password-file",
        restic.repository.password_file,
        *ids,
        manifest.snapshot,
        action="copy",
    )
    prune(plan, target)
