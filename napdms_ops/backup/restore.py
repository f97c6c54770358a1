"""Find a finished run and put its data back.

Into a fresh place, or over old data only with --force, and then as a point in time: a safety
snapshot of what was there first, each directory restored beside itself before it replaces what
was there. `python3 -m napdms_ops.backup.restore set-aside` is the first half of a forced restore
from another stack's backup, run with the target stack's plan.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from components.model.plan import BackupPlan, FilesSource, PostgresqlSource
from napdms_ops.backup import hooks, pitr
from napdms_ops.backup.manifest import RunManifest, manifests
from napdms_ops.backup.restic import Restic, Snapshot
from napdms_ops.backup.run import context_for, repository


class RestoreError(RuntimeError):
    """The restore cannot go ahead; the message says why and what to do instead."""


def select(
    found: Sequence[RunManifest], snapshot: str, services: Sequence[str], timezone: str
) -> RunManifest:
    """The run `snapshot` names (`latest`, a run or snapshot id, or a time) in which `services`
    all succeeded."""

    def complete(manifest: RunManifest) -> bool:
        wanted = services or list(manifest.services)
        return all(
            name in manifest.services and manifest.services[name].status == "ok" for name in wanted
        )

    usable = [m for m in found if complete(m)]
    what = f"services {', '.join(services)}" if services else "every service"
    if not usable:
        raise RestoreError(
            f"no finished run backed up {what}; `backup list` shows the runs there are"
        )
    if snapshot == "latest":
        return usable[-1]
    by_id = [
        m
        for m in found
        if m.run_id.startswith(snapshot)
        or (m.snapshot or "").startswith(snapshot)
        or any(p.snapshot.startswith(snapshot) for r in m.services.values() for p in r.parts)
    ]
    if by_id:
        if len(by_id) > 1:
            raise RestoreError(
                f'"{snapshot}" matches {len(by_id)} runs; give more characters of the id'
            )
        if not complete(by_id[0]):
            raise RestoreError(
                f"run {by_id[0].run_id} did not back up {what}; pick another with `backup list`"
            )
        return by_id[0]
    moment = _moment(snapshot, timezone)
    earlier = [m for m in usable if m.started <= moment]
    if not earlier:
        raise RestoreError(
            f"no run that backed up {what} started before {snapshot}; "
            f"the oldest is {_when(usable[0].started, timezone)}"
        )
    return earlier[-1]


def _moment(text: str, timezone: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RestoreError(
            f'"{text}" is neither "latest", a run or snapshot id, nor a time; '
            f'use e.g. "2026-11-20T03:00" (in {timezone})'
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.timestamp()


def _when(moment: float, timezone: str) -> str:
    return f"{dt.datetime.fromtimestamp(moment, ZoneInfo(timezone)):%Y-%m-%d %H:%M %Z}"


@dataclass(frozen=True)
class RestoreReport:
    """What a restore put back and how long it took."""

    run_id: str
    services: tuple[str, ...]
    bytes: int
    seconds: float
    safety_snapshot: str | None


def restore(
    plan: BackupPlan,
    snapshot: str,
    into: str,
    services: Sequence[str] = (),
    force: bool = False,
    verify: bool = False,
    restic: Restic | None = None,
) -> RestoreReport:
    """Restore the chosen run's `services` (all by default) under `into`.

    `into` must be empty: restoring over data needs `force`, and then the data there is first
    backed up as a safety snapshot (tagged `safety`, restorable with this function by its id), so
    a wrong restore can itself be undone. Each files service's directories then hold exactly what
    the snapshot holds: it is restored beside them on the same filesystem, and only once complete
    replaces what was there (files written after the snapshot are gone; the safety snapshot has
    them).
    """
    restic = restic or repository(plan)
    sources = {source.service: source for source in plan.sources}
    unknown = [name for name in services if name not in sources]
    if unknown:
        raise RestoreError(
            f"{', '.join(unknown)}: not in the backup plan of stack {plan.stack}; "
            f"known: {', '.join(sources)}"
        )
    found = manifests(plan, restic)
    safety_source = _safety_snapshot(restic, snapshot) if snapshot != "latest" else None
    if safety_source is not None and not any(m.run_id.startswith(snapshot) for m in found):
        return _restore_safety(plan, restic, safety_source, into, services, force, verify)
    manifest = select(found, snapshot, services, plan.schedule.timezone)
    chosen = list(services) or [name for name in manifest.services if name in sources]
    target = Path(into)
    safety = _take_safety(plan, restic, target, chosen, force)
    target.mkdir(parents=True, exist_ok=True)
    context = context_for(
        plan, restic, manifest.run_id, workdir=str(target.parent), verify_restore=verify
    )
    started = time.monotonic()
    for name in chosen:
        if safety and isinstance(sources[name], FilesSource):
            for each in manifest.services[name].parts:
                for path in each.path.split(","):
                    _replace(restic, each.snapshot, "", path, target, verify)
        else:
            hooks.restore(sources[name], manifest.services[name], context, str(target))
    return RestoreReport(
        run_id=manifest.run_id,
        services=tuple(chosen),
        bytes=sum(p.bytes for name in chosen for p in manifest.services[name].logical_parts),
        seconds=time.monotonic() - started,
        safety_snapshot=safety,
    )


def restore_to(
    plan: BackupPlan,
    moment: str,
    into: str,
    services: Sequence[str],
    workdir: str | None = None,
) -> pitr.Recovery:
    """Recover one PostgreSQL service with an archived WAL to `moment` (a time in the plan's
    zone, or with an offset) into `into/<service>`, which must be empty: a fresh data directory
    the postgres image starts as it is."""
    archived = [
        s.service for s in plan.sources if isinstance(s, PostgresqlSource) and s.wal is not None
    ]
    if len(services) != 1 or services[0] not in archived:
        raise RestoreError(
            f"--to recovers one PostgreSQL service with an archived WAL; give --service "
            f"{' or '.join(archived) or '(none in the plan of stack ' + plan.stack + ')'}"
        )
    source = next(s for s in plan.sources if s.service == services[0])
    target = _moment(moment, plan.schedule.timezone)
    if target > time.time():
        raise RestoreError(f"--to {moment} is in the future; give a moment that has passed")
    return pitr.recover(
        plan,
        source,
        repository(plan),
        str(Path(into) / source.service),
        workdir or tempfile.gettempdir(),
        moment=target,
    )


SAFETY_TAG = "safety"


def _take_safety(
    plan: BackupPlan, restic: Restic, target: Path, services: Sequence[str], force: bool
) -> str | None:
    """Back up what `target` holds before it is overwritten; None when it holds nothing."""
    if not _holds_data(target):
        return None
    if not force:
        raise RestoreError(
            f"{target} is not empty; restore into a fresh place, "
            "or add --force to overwrite it after a safety snapshot"
        )
    tags = ["napdms", f"stack={plan.stack}", SAFETY_TAG, *(f"service={s}" for s in services)]
    return restic.backup_paths([str(target)], plan.host_tag, tags).snapshot_id


def _safety_snapshot(restic: Restic, snapshot: str) -> Snapshot | None:
    """The safety snapshot whose id starts with `snapshot`, if there is exactly one."""
    if not re.fullmatch(r"[0-9a-f]{4,64}", snapshot):
        return None
    matches = [s for s in restic.snapshots(tags=[SAFETY_TAG]) if s.id.startswith(snapshot)]
    return matches[0] if len(matches) == 1 and len(matches[0].paths) == 1 else None


def _restore_safety(
    plan: BackupPlan,
    restic: Restic,
    snapshot: Snapshot,
    into: str,
    services: Sequence[str],
    force: bool,
    verify: bool,
) -> RestoreReport:
    """Put a safety snapshot back: the files services it covered (or `services`), each directory
    as it was when the snapshot was taken. Dumps are not in safety snapshots."""
    sources = {s.service: s for s in plan.sources if isinstance(s, FilesSource)}
    covered = [t.removeprefix("service=") for t in snapshot.tags if t.startswith("service=")]
    chosen = [s for s in (services or covered or list(sources)) if s in sources]
    if not chosen:
        raise RestoreError(
            f"safety snapshot {snapshot.id[:8]} holds no files service of {', '.join(services)}"
        )
    target = Path(into)
    safety = _take_safety(plan, restic, target, chosen, force)
    started = time.monotonic()
    for name in chosen:
        for path in sources[name].paths:
            _replace(restic, snapshot.id, snapshot.paths[0], path, target, verify)
    return RestoreReport(
        run_id=snapshot.id,
        services=tuple(chosen),
        bytes=0,
        seconds=time.monotonic() - started,
        safety_snapshot=safety,
    )


def _replace(
    restic: Restic, snapshot: str, prefix: str, path: str, target: Path, verify: bool
) -> None:
    """Make `target/<path>` hold exactly what `snapshot` holds at `<prefix><path>`.

    restic restores into a staging directory inside it (same filesystem: each entry then moves
    by rename); only after restic succeeded is what was there removed and the restored entries
    moved in. A path the snapshot does not hold is left alone.
    """
    root = target / path.lstrip("/")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".napdms-restore-", dir=root))
    try:
        stored = f"{prefix.rstrip('/')}{path}"
        restic.run(
            "restore",
            snapshot,
            "--target",
            str(staging),
            "--include",
            stored,
            *(["--verify"] if verify else []),
            action="restore",
        )
        restored = staging / stored.lstrip("/")
        if not restored.is_dir():
            return
        for entry in root.iterdir():
            if entry != staging:
                _remove(entry)
        for entry in restored.iterdir():
            entry.rename(root / entry.name)
        status = restored.stat()
        os.chown(root, status.st_uid, status.st_gid)
        os.chmod(root, stat.S_IMODE(status.st_mode))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove(entry: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _holds_data(target: Path) -> bool:
    """Any file below `target`; empty directories (fresh volumes' mount points) hold nothing."""
    return target.exists() and any(
        not entry.is_dir() or entry.is_symlink() for entry in target.rglob("*")
    )


def set_aside(plan: BackupPlan, into: str, services: Sequence[str]) -> str | None:
    """Back up what the files `services` hold under `into` as a safety snapshot in this plan's
    repository, then empty their directories; returns the snapshot id (None when they held
    nothing).

    The first half of a forced restore from another stack's backup: the target stack's agent
    keeps the safety copy in its own repository, and the restore that follows (with the source
    stack's plan) finds empty directories, so the result is exactly the snapshot.
    """
    sources = {s.service: s for s in plan.sources if isinstance(s, FilesSource)}
    chosen = [s for s in (services or list(sources)) if s in sources]
    target = Path(into)
    safety = _take_safety(plan, repository(plan), target, chosen, force=True)
    if safety is None:
        return None
    for name in chosen:
        for path in sources[name].paths:
            root = target / path.lstrip("/")
            if root.is_dir():
                for entry in root.iterdir():
                    _remove(entry)
    return safety


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 -m napdms_ops.backup.restore set-aside --plan P --into DIR [--service S]...`:
    `set_aside`, printing {"safety_snapshot": id} (the ops CLI runs it in a one-shot job)."""
    import argparse
    import json
    import sys

    from components.model.plan import PLAN_FILE, PlanError, load_plan
    from napdms_ops.backup.restic import ResticError

    parser = argparse.ArgumentParser(prog="python3 -m napdms_ops.backup.restore")
    parser.add_argument("command", choices=["set-aside"])
    parser.add_argument("--plan", default=PLAN_FILE)
    parser.add_argument("--into", required=True)
    parser.add_argument("--service", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        safety = set_aside(load_plan(args.plan), args.into, args.service)
    except PlanError as error:
        print(str(error), file=sys.stderr)
        return 2
    except (ResticError, RestoreError, OSError) as error:
        print(str(error), file=sys.stderr)
        return 1
    print(json.dumps({"safety_snapshot": safety}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
