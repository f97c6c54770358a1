"""Find a finished run and put its data back.

Into a fresh place, or over old data only with --force.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from components.model.plan import BackupPlan
from napdms_ops.backup import hooks
from napdms_ops.backup.manifest import RunManifest, manifests
from napdms_ops.backup.restic import Restic
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
    backed up as a safety snapshot, so a wrong restore can itself be undone.
    """
    restic = restic or repository(plan)
    sources = {source.service: source for source in plan.sources}
    unknown = [name for name in services if name not in sources]
    if unknown:
        raise RestoreError(
            f"{', '.join(unknown)}: not in the backup plan of stack {plan.stack}; "
            f"known: {', '.join(sources)}"
        )
    manifest = select(manifests(plan, restic), snapshot, services, plan.schedule.timezone)
    chosen = list(services) or [name for name in manifest.services if name in sources]
    target = Path(into)
    safety = None
    if _holds_data(target):
        if not force:
            raise RestoreError(
                f"{into} is not empty; restore into a fresh place, "
                "or add --force to overwrite it after a safety snapshot"
            )
        safety = restic.backup_paths(
            [str(target)], plan.host_tag, ["napdms", f"stack={plan.stack}", "safety"]
        ).snapshot_id
    target.mkdir(parents=True, exist_ok=True)
    context = context_for(
        plan, restic, manifest.run_id, workdir=str(target.parent), verify_restore=verify
    )
    started = time.monotonic()
    for name in chosen:
        hooks.restore(sources[name], manifest.services[name], context, str(target))
    return RestoreReport(
        run_id=manifest.run_id,
        services=tuple(chosen),
        bytes=sum(manifest.services[name].bytes for name in chosen),
        seconds=time.monotonic() - started,
        safety_snapshot=safety,
    )


def _holds_data(target: Path) -> bool:
    """Any file below `target`; empty directories (fresh volumes' mount points) hold nothing."""
    return target.exists() and any(
        not entry.is_dir() or entry.is_symlink() for entry in target.rglob("*")
    )
