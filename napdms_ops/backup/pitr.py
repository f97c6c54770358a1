"""Point-in-time recovery of PostgreSQL from the restic repository.

Three kinds of snapshot make it up, all of the source's service:
- the base backup, a part of a run (`pg_basebackup` as one tar, `part=base`); its record says
  where its WAL starts and when it ended;
- the WAL archive: the agent's spool of `pg_receivewal` backed up as a whole every few seconds
  (`kind=wal`); snapshots of one spool state are an *epoch*, named by the spool's first segment
  (`wal-from=`), and the newest snapshot of an epoch holds all the others do. A base backup
  starts a new epoch: the spool drops what the new base no longer needs once it is shipped;
- restore points with every table's sums (`kind=pg-marker`), set at random moments, which the
  drill recovers to and compares.

Recovery (`recover`) unpacks the newest base backup that ended before the target into an empty
data directory, restores the epochs from that base's start up to the target, and runs the
server's own recovery (`restore_command`, `recovery_target_time` or `_name`) until it promotes.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from components.model.plan import BackupPlan, PostgresqlSource
from napdms_ops.backup.manifest import BaseBackup, RunManifest, TableSum, manifests
from napdms_ops.backup.restic import Restic, Snapshot, moment_of

BASE_FILE = "base.tar"
MARKER_FILE = "marker.json"
WAL_KIND = "kind=wal"
MARKER_KIND = "kind=pg-marker"
PITR_KINDS = (WAL_KIND, MARKER_KIND)
"""Tags of the snapshots that belong to no run: retention judges them here (`retain`)."""
OWNER = "postgres"
"""The server's user in the agent's image (uid 999, as in the postgres image)."""
_SEGMENT = re.compile(r"^[0-9A-F]{24}$")
_FILE = re.compile(r"^[0-9A-F]{24}(\.partial)?$|^[0-9A-F]{8}\.history$")


class PitrError(RuntimeError):
    """A point-in-time restore cannot go ahead or failed; the message says why."""


class Marker(BaseModel):
    """A restore point and the sums of every table at exactly that point."""

    name: str
    time: float
    lsn: str
    tables: dict[str, dict[str, TableSum]]
    checksum_method: str


def position(segment: str) -> str:
    """A segment name without its timeline: positions only grow across timelines."""
    return segment[8:]


def timeline(segment: str) -> int:
    """The timeline a segment name belongs to."""
    return int(segment[:8], 16)


# ----------------------------------------------------------------------------- the archive


@dataclass(frozen=True)
class Epoch:
    """The newest snapshot of one spool state, and the snapshots it supersedes."""

    wal_from: str
    wal_to: str
    newest: Snapshot
    superseded: tuple[Snapshot, ...]
    since: float | None = None
    """When the agent began this spool state (its `since=` tag), if it says."""
    switches: tuple[tuple[int, float], ...] = ()
    """Timelines the server went on on, and from when (its `timeline-N=` tags)."""


def epochs(restic: Restic, host: str, service: str) -> list[Epoch]:
    """The service's WAL epochs in the repository, oldest first."""
    grouped: dict[str, list[Snapshot]] = {}
    for snapshot in restic.snapshots(host=host, tags=[WAL_KIND, f"service={service}"]):
        wal_from = snapshot.tag("wal-from")
        if wal_from and snapshot.tag("wal-to"):
            grouped.setdefault(wal_from, []).append(snapshot)
    found = []
    for wal_from, snapshots in grouped.items():
        snapshots.sort(key=lambda s: (position(s.tag("wal-to")), s.time))
        newest = snapshots[-1]
        since = newest.tag("since")
        found.append(
            Epoch(
                wal_from,
                newest.tag("wal-to"),
                newest,
                tuple(snapshots[:-1]),
                float(since) if since and since.isdigit() else None,
                _switches(newest),
            )
        )
    return sorted(found, key=lambda e: position(e.wal_from))


def _switches(snapshot: Snapshot) -> tuple[tuple[int, float], ...]:
    found = []
    for tag in snapshot.tags:
        key, _, value = tag.partition("=")
        if key.startswith("timeline-") and value.isdigit():
            try:
                found.append((int(key.removeprefix("timeline-"), 16), float(value)))
            except ValueError:
                continue
    return tuple(found)


def spool_files(spool: Path) -> list[Path]:
    """The WAL files `pg_receivewal` wrote, in WAL order (partial and history files included)."""
    if not spool.is_dir():
        return []
    return sorted(
        (path for path in spool.iterdir() if _FILE.match(path.name)),
        key=lambda p: (p.name.endswith(".history"), position(p.name[:24]), p.name),
    )


def ship(
    restic: Restic,
    spool: Path,
    host: str,
    tags: Sequence[str],
    service: str,
    since: float | None = None,
    timelines: Mapping[str, float] | None = None,
) -> Snapshot | None:
    """Back up the spool as the newest snapshot of its epoch (`since`: when the agent began this
    spool state); None when the spool holds no segment yet."""
    segments = [p.name[:24] for p in spool_files(spool) if not p.name.endswith(".history")]
    if not segments:
        return None
    wal_from, wal_to = segments[0], segments[-1]
    # No forget here: it would lock the repository exclusively every few seconds and fail the
    # runs and restores that meet it. The daily prune forgets superseded snapshots (`retain`).
    summary = restic.backup_paths(
        [str(spool)],
        host,
        [
            *tags,
            WAL_KIND,
            f"service={service}",
            f"wal-from={wal_from}",
            f"wal-to={wal_to}",
            *([f"since={int(since)}"] if since is not None else []),
            *(f"timeline-{line}={int(at)}" for line, at in sorted((timelines or {}).items())),
        ],
    )
    return Snapshot(summary.snapshot_id, "", (str(spool),), (), host, None)


def trim(spool: Path, start_wal: str) -> list[str]:
    """Drop from the spool the segments a base backup starting in `start_wal` does not need (they
    are in the previous epoch's snapshots): earlier ones, and those of older timelines; returns
    their names."""
    dropped = []
    for path in spool_files(spool):
        name = path.name[:24]
        if not path.name.endswith(".history") and (
            position(name) < position(start_wal) or timeline(name) < timeline(start_wal)
        ):
            path.unlink(missing_ok=True)
            dropped.append(path.name)
    return dropped


def retain(
    restic: Restic, host: str, service: str, kept: Sequence[BaseBackup], forget: bool = True
) -> list[str]:
    """The WAL and markers older than the oldest kept base backup, and the superseded snapshots
    of each epoch: forgotten (or, with `forget=False`, only returned for the caller's own
    forget). With no base backup kept, nothing."""
    if not kept:
        return []
    oldest = min(kept, key=lambda b: position(b.start_wal))
    doomed: list[str] = []
    for epoch in epochs(restic, host, service):
        doomed += [s.id for s in epoch.superseded]
        if position(epoch.wal_to) < position(oldest.start_wal):
            doomed.append(epoch.newest.id)
    for marker in restic.snapshots(host=host, tags=[MARKER_KIND, f"service={service}"]):
        if moment_of(marker.time) < oldest.finished:
            doomed.append(marker.id)
    if forget:
        restic.forget(*doomed)
    return doomed


def archive_snapshots(plan: BackupPlan, restic: Restic) -> list[str]:
    """The snapshots of every WAL archive that recovery needs (each epoch's newest) and the
    markers: what the offsite copy takes besides the runs."""
    ids = []
    for source in plan.sources:
        if isinstance(source, PostgresqlSource) and source.wal is not None:
            ids += [epoch.newest.id for epoch in epochs(restic, plan.host_tag, source.service)]
            ids += [
                s.id
                for s in restic.snapshots(
                    host=plan.host_tag, tags=[MARKER_KIND, f"service={source.service}"]
                )
            ]
    return ids


# ----------------------------------------------------------------------------- recovery


@dataclass(frozen=True)
class Recovery:
    """What a point-in-time recovery did."""

    base_run: str
    base_finished: float
    target: str
    """The target as the server was given it (a time, or a restore point's name)."""
    epochs: int
    wal_files: int
    seconds: float


def bases(found: Sequence[RunManifest], service: str) -> list[tuple[RunManifest, BaseBackup]]:
    """Runs with a base backup of `service`, oldest first."""
    return [
        (run, run.services[service].base)
        for run in found
        if service in run.services
        and run.services[service].status == "ok"
        and run.services[service].base is not None
    ]


def choose_base(
    found: Sequence[RunManifest], service: str, moment: float
) -> tuple[RunManifest, BaseBackup]:
    """The newest base backup of `service` that ended before `moment`."""
    usable = bases(found, service)
    if not usable:
        raise PitrError(
            f"{service}: no base backup in the repository yet; the next scheduled run takes one "
            "(or `backup run` now)"
        )
    earlier = [pair for pair in usable if pair[1].finished <= moment]
    if not earlier:
        raise PitrError(
            f"{service}: the oldest base backup ended at {_iso(usable[0][1].finished)}, after "
            f"{_iso(moment)}; recovery can only reach moments after a base backup ended"
        )
    return earlier[-1]


def choose_epochs(found: Sequence[Epoch], base: BaseBackup, moment: float) -> list[Epoch]:
    """The epochs that hold the WAL from `base`'s start to `moment` on the base's timeline: from
    the one holding the start, up to the first one shipped after `moment`.

    A later timeline (a recovered cluster put in place) that was live at `moment` is refused: its
    WAL forks from this one, and only a base backup on it recovers its moments."""
    line = timeline(base.start_wal)
    switches = [(timeline(e.wal_from), e.since) for e in found if e.since is not None]
    switches += [switch for e in found for switch in e.switches]
    for new_line, since in sorted(switches, key=lambda pair: pair[1]):
        if new_line > line and since <= moment:
            raise PitrError(
                f"at {_iso(since)} the server went on on timeline {new_line} "
                f"(a recovered cluster was put in place), and no base backup on it ended before "
                f"{_iso(moment)}; take one (`napdms-ops backup run`) for later moments, or pick "
                f"a moment before {_iso(since)}"
            )
    chosen = []
    for epoch in found:
        # The epoch reaches the base's timeline (a spool may cross from an older one into it).
        on_line = timeline(epoch.wal_from) <= line <= timeline(epoch.wal_to)
        if not on_line or position(epoch.wal_to) < position(base.start_wal):
            continue
        chosen.append(epoch)
        if moment_of(epoch.newest.time) >= moment:
            break
    if not chosen or position(chosen[0].wal_from) > position(base.start_wal):
        raise PitrError(
            f"the WAL archive lacks segment {base.start_wal}, where the chosen base backup "
            "starts; pick a later moment (`backup list` shows the base backups)"
        )
    return chosen


def recover(
    plan: BackupPlan,
    source: PostgresqlSource,
    restic: Restic,
    data_dir: str,
    workdir: str,
    moment: float | None = None,
    marker: Marker | None = None,
    inspect: Callable[[dict[str, str]], None] | None = None,
) -> Recovery:
    """Recover `source` to `moment` (or to `marker`'s restore point) into the empty `data_dir`.

    The server runs here on a private socket until it has promoted; `inspect` gets the libpq
    environment to reach it before it stops. The data directory then holds a stopped cluster on a
    new timeline, ready for the postgres image (owner uid 999, recovery settings removed).
    """
    started = time.monotonic()
    target_moment = marker.time if marker is not None else moment
    if target_moment is None:
        raise PitrError("recover needs a moment or a marker")
    data = Path(data_dir)
    if data.exists() and any(data.iterdir()):
        raise PitrError(
            f"{data_dir} is not empty; point-in-time recovery writes a fresh data directory"
        )
    run, base = choose_base(manifests(plan, restic), source.service, target_moment)
    chosen = choose_epochs(epochs(restic, plan.host_tag, source.service), base, target_moment)
    scratch = Path(workdir) / f"pitr-{source.service}"
    shutil.rmtree(scratch, ignore_errors=True)
    wal = scratch / "wal"
    wal.mkdir(parents=True)
    count = _gather_wal(restic, chosen, scratch, wal)
    if marker is not None:
        target = {"recovery_target_name": marker.name}
        shown = f"restore point {marker.name}"
    else:
        shown = _iso(target_moment)
        target = {"recovery_target_time": shown}
    _own(scratch)
    try:
        _recover_once(restic, base, source.service, data, scratch, target, inspect)
    except _TargetNotReached:
        # The server stops at the first commit after a target time; with none after it (a quiet
        # database), it reports the target unreached. When the archive was shipped after the
        # moment, every commit in it came before the moment: its end *is* the moment.
        if marker is not None or moment_of(chosen[-1].newest.time) < target_moment:
            raise PitrError(_UNREACHED) from None
        _empty(data)
        _recover_once(restic, base, source.service, data, scratch, {}, inspect)
    shutil.rmtree(scratch, ignore_errors=True)
    return Recovery(
        base_run=run.run_id,
        base_finished=base.finished,
        target=shown,
        epochs=len(chosen),
        wal_files=count,
        seconds=time.monotonic() - started,
    )


_UNREACHED = (
    "the WAL archive ends before the target (the newest WAL reaches the repository every "
    "ship_interval_s): pick an earlier moment"
)


class _TargetNotReached(PitrError):
    """The server replayed the whole archive without reaching the recovery target."""


def _recover_once(
    restic: Restic,
    base: BaseBackup,
    service: str,
    data: Path,
    scratch: Path,
    target: Mapping[str, str],
    inspect: Callable[[dict[str, str]], None] | None,
) -> None:
    """Unpack the base into `data`, replay the gathered WAL to `target` (none: to its end),
    let `inspect` look, take the recovery settings out again and stop the server."""
    data.mkdir(parents=True, exist_ok=True)
    _unpack_base(restic, base, service, data)
    _configure(data, scratch / "wal", target)
    log = scratch / "server.log"
    log.unlink(missing_ok=True)
    with _server(data, scratch / "run", log) as env:
        if inspect is not None:
            inspect(env)
        _reset(env, target)


def _empty(data: Path) -> None:
    for entry in data.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _gather_wal(restic: Restic, chosen: Sequence[Epoch], scratch: Path, wal: Path) -> int:
    """Restore the epochs and lay their files flat into `wal`; the newest partial segment
    becomes a segment (the server replays what it holds and stops at its end)."""
    for index, epoch in enumerate(chosen):
        into = scratch / f"epoch-{index}"
        restic.restore(epoch.newest.id, str(into))
        for path in into.rglob("*"):
            if path.is_file() and _FILE.match(path.name):
                os.replace(path, wal / path.name)
        shutil.rmtree(into, ignore_errors=True)
    partials = sorted(wal.glob("*.partial"), key=lambda p: position(p.name[:24]))
    for partial in partials:
        complete = wal / partial.name[:24]
        if complete.exists() or partial != partials[-1]:
            partial.unlink()
        else:
            os.replace(partial, complete)
    return sum(1 for _ in wal.iterdir())


def _unpack_base(restic: Restic, base: BaseBackup, service: str, data: Path) -> None:
    """Stream the base backup's tar out of the repository into `data` (never a copy on disk)."""
    dump = subprocess.Popen(
        restic.argv("dump", base.part, f"/{service}/{BASE_FILE}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=restic.environment(),
    )
    untar = subprocess.run(
        ["tar", "-x", "-C", str(data), "--no-same-owner"],
        stdin=dump.stdout,
        capture_output=True,
    )
    dump.stdout.close()
    error = dump.stderr.read().decode(errors="replace").strip()
    if dump.wait() != 0 or untar.returncode != 0:
        detail = error or untar.stderr.decode(errors="replace").strip()
        raise PitrError(f"{service}: unpacking base backup {base.part[:8]}: {detail[-300:]}")


def _configure(data: Path, wal: Path, target: Mapping[str, str]) -> None:
    settings = {
        "restore_command": f"cp '{wal}/%f' '%p'",
        **target,
        "recovery_target_action": "promote",
        # The base's own timeline: the archive's epochs were chosen along it.
        "recovery_target_timeline": "current",
    }
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write("# napdms point-in-time recovery (removed once recovered)\n")
        for key, value in settings.items():
            conf.write(f"{key} = '{_quote(value)}'\n")
    (data / "recovery.signal").write_text("")
    # A base backup never holds these, but a tar from elsewhere might.
    (data / "postmaster.pid").unlink(missing_ok=True)


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _own(scratch: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{OWNER}:{OWNER}", str(scratch)], check=True)


@contextmanager
def _server(data: Path, sockets: Path, log: Path, timeout_s: float = 6 * 3600) -> Iterator[dict]:
    """Run the server on `data` until it leaves recovery; yield how to reach it; stop it."""
    bin_dir = server_binaries()
    sockets.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{OWNER}:{OWNER}", str(data), str(sockets)], check=True)
    data.chmod(0o700)
    user = OWNER if os.geteuid() == 0 else os.environ.get("USER", OWNER)
    env = dict(os.environ, PGHOST=str(sockets), PGPORT="5432", PGUSER=user, PGDATABASE="postgres")
    env.pop("PGPASSWORD", None)
    # The cluster's own pg_hba may refuse the socket; this run trusts its private socket only.
    hba = sockets / "pg_hba.conf"
    hba.write_text(f"local all {user} trust\nlocal all all trust\n")
    if os.geteuid() == 0:
        shutil.chown(hba, OWNER, OWNER)
    # Only what this private run needs: settings the primary had (max_connections, ...) stay.
    options = f"-c listen_addresses='' -k {sockets} -c hba_file={hba} -c archive_mode=off"
    # The server is the child itself (not under runuser), so SIGINT reaches it directly.
    as_owner = {"user": OWNER, "group": OWNER, "extra_groups": []} if os.geteuid() == 0 else {}
    with open(log, "ab") as output:
        server = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), *shlex.split(options)],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd="/",
            **as_owner,
        )
    try:
        _wait_promoted(server, env, log, timeout_s)
        yield env
    finally:
        if server.poll() is None:
            # A fast shutdown (a clean checkpoint) by the owner's pg_ctl: a restore job's root
            # has no CAP_KILL for another user's process.
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "300", "stop"],
                capture_output=True,
                cwd="/",
                **as_owner,
            )
            server.wait(timeout=30)


def _wait_promoted(server: subprocess.Popen, env: dict, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            why = _why(log)
            if why == _UNREACHED:
                raise _TargetNotReached(why)
            raise PitrError(f"recovery stopped: {why}")
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-c", "SELECT pg_is_in_recovery()"],
            env=env,
            capture_output=True,
        )
        if done.returncode == 0 and done.stdout.strip() == b"f":
            return
        time.sleep(0.5)
    raise PitrError(f"recovery still running after {timeout_s:.0f} s: {_why(log)}")


def _why(log: Path) -> str:
    """The server's last FATAL or ERROR line: why recovery stopped."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no server log"
    fatal = [i for i, line in enumerate(lines) if "FATAL" in line or "PANIC" in line]
    if not fatal:
        return (lines or ["no server log"])[-1]
    line = lines[fatal[0]]
    if "recovery ended before configured recovery target was reached" in line:
        return _UNREACHED
    detail = lines[fatal[0] + 1] if fatal[0] + 1 < len(lines) else ""
    if "contains errors" in line and fatal[0] > 0:
        detail = lines[fatal[0] - 1]  # the setting the server refused
    return line + (f" ({detail.strip()})" if "DETAIL" in detail or "contains" in line else "")


def _reset(env: dict, target: Mapping[str, str]) -> None:
    """Take the recovery settings out of postgresql.auto.conf, so the volume starts plainly."""
    for key in ("restore_command", *target, "recovery_target_action", "recovery_target_timeline"):
        subprocess.run(
            ["psql", "-X", "-q", "-c", f"ALTER SYSTEM RESET {key}"],
            env=env,
            capture_output=True,
            check=True,
        )


def server_binaries() -> Path:
    """The newest PostgreSQL server's bin directory (initdb, pg_ctl)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        raise PitrError(
            "no PostgreSQL server binaries (initdb) in this image; the drill needs them"
        )
    return Path(candidates[-1]).parent


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def read_markers(restic: Restic, host: str, service: str) -> list[tuple[Snapshot, Marker]]:
    """The service's restore points with their sums, oldest first."""
    found = []
    for snapshot in restic.snapshots(host=host, tags=[MARKER_KIND, f"service={service}"]):
        try:
            marker = Marker.model_validate_json(
                restic.dump(snapshot.id, f"/{service}/{MARKER_FILE}")
            )
        except ValueError:
            continue  # a newer agent's marker: another drill's to judge
        found.append((snapshot, marker))
    return sorted(found, key=lambda pair: pair[1].time)


def store_marker(
    restic: Restic, marker: Marker, host: str, tags: Sequence[str], service: str
) -> str:
    """Keep a restore point's record in the repository; its snapshot id."""
    return restic.backup_bytes(
        marker.model_dump_json(indent=2).encode(),
        f"/{service}/{MARKER_FILE}",
        host,
        [*tags, MARKER_KIND, f"service={service}", f"marker={marker.name}"],
    ).snapshot_id
