"""The agent: the scheduler loop of the container, its health, and the commands it answers."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from components.model.plan import BackupPlan
from napdms_ops.backup import offsite, pitr, server_stats, wal
from napdms_ops.backup.drill import drill
from napdms_ops.backup.manifest import listing
from napdms_ops.backup.metrics import METRICS_FILE
from napdms_ops.backup.rekey import rekey_plan
from napdms_ops.backup.restore import RestoreError, restore, restore_to
from napdms_ops.backup.run import (
    RunLocked,
    crashed_state,
    open_repository,
    prune,
    repository,
    run_backup,
    verify,
)

HEARTBEAT_FILE = "agent.alive"
HEARTBEAT_S = 30
"""Default of the plan's `health.beat_s`: the agent beats this often; `health` fails after four
missed beats."""
PROGRESS_FILE = "run.progress"
"""While the loop's run goes on: when it started and when its processes last made progress."""
PROGRESS_BYTES_PER_S = 1024
"""Slower than this, a run's processes are not moving: a blocked restic still reads a trickle
(its runtime polls the system), far below it, and a run that moves moves far faster."""

log = logging.getLogger(__name__)


class CommandError(RuntimeError):
    """A command could not do what was asked (message says why)."""


def next_run(plan: BackupPlan, now: float) -> float:
    """The next time of day of the schedule, in the plan's time zone, strictly after `now`."""
    zone = ZoneInfo(plan.schedule.timezone)
    hour, minute = (int(part) for part in plan.schedule.time_of_day.split(":"))
    local = dt.datetime.fromtimestamp(now, zone)
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate.timestamp() <= now:
        candidate = (local + dt.timedelta(days=1)).replace(
            hour=hour, minute=minute, second=0, microsecond=0
        )
    # Re-attach the zone so a DST change between today and tomorrow lands on local wall time.
    return candidate.replace(tzinfo=zone).timestamp()


def serve_metrics(plan: BackupPlan) -> http.server.ThreadingHTTPServer:
    """Serve the state directory's metrics file at /metrics, in a daemon thread."""
    metrics = Path(plan.state_dir) / METRICS_FILE

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/metrics":
                self.send_error(404)
                return
            try:
                body = metrics.read_bytes()
            except OSError:
                body = b""  # before the first run: no samples, so "absent" alerts fire
            try:
                body += wal.render_metrics(plan).encode()
            except Exception:  # a broken archive state must not hide the run's metrics
                log.exception("rendering the WAL archive's metrics failed")
            try:
                body += server_stats.render_metrics(plan).encode()
            except Exception:  # nor a server that answers oddly
                log.exception("reading the servers' connections failed")
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", plan.metrics_port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def loop(
    plan: BackupPlan,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    runs: int | None = None,
    archive: bool = True,
) -> None:
    """Wait for each scheduled time and run; beat the heartbeat meanwhile, and during each run;
    meanwhile archive each PostgreSQL source's WAL (`wal.Archiver`).

    No run's error ends the loop (it is logged and recorded as a failed run); signals do.
    `runs` bounds it for tests; `archive=False` leaves the WAL alone (tests of the schedule).
    """
    state = Path(plan.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    (state / PROGRESS_FILE).unlink(missing_ok=True)  # of a run an earlier process left behind
    rekey_plan(plan)  # before the archivers' first restic call
    archiving = wal.archivers(plan, repository(plan)) if archive else []
    done = 0
    try:
        while runs is None or done < runs:
            if done:
                rekey_plan(plan)  # between runs: a rotated restic-password becomes the key
            due = next_run(plan, clock())
            while clock() < due:
                _write(state / HEARTBEAT_FILE, str(clock()))
                sleep(min(plan.health.beat_s, max(due - clock(), 0)))
            run_once(plan, clock)
            done += 1
    finally:
        for archiver in archiving:
            archiver.stop()


def run_once(plan: BackupPlan, clock: Callable[[], float] = time.time) -> None:
    """One scheduled run, watched (`RunWatch`); whatever it raises short of a signal is logged,
    recorded as a failed run (reason `internal`) and survived."""
    started = clock()
    with RunWatch(plan, clock):
        try:
            run_backup(plan)
        except RunLocked as error:
            log.warning("scheduled backup skipped: %s", error)  # the manual run records itself
        except Exception as error:
            log.exception("backup run failed unexpectedly; the agent waits for the next run")
            try:
                crashed_state(plan, started, clock(), error)
            except Exception:
                log.exception("could not record the failed run")


class RunWatch:
    """While a run goes on, a thread beats the heartbeat every `health.beat_s` and records in
    `PROGRESS_FILE` when the run's processes (restic, the dump tools) last moved: read or wrote
    at least `PROGRESS_BYTES_PER_S` since the beat before, or started or ended a process.
    `health` reads it."""

    def __init__(self, plan: BackupPlan, clock: Callable[[], float] = time.time):
        self.state = Path(plan.state_dir)
        self.beat_s = plan.health.beat_s
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="run-watch", daemon=True)

    def __enter__(self) -> RunWatch:
        self.state.mkdir(parents=True, exist_ok=True)
        self.started = self.progress = self.clock()
        self._activity, self._sampled = activity(), time.monotonic()
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        (self.state / PROGRESS_FILE).unlink(missing_ok=True)
        _write(self.state / HEARTBEAT_FILE, str(self.clock()))

    def _watch(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                now, sampled = activity(), time.monotonic()
                if moved(self._activity, now, sampled - self._sampled):
                    self.progress = self.clock()
                self._activity, self._sampled = now, sampled
                self._beat()
            except Exception:
                log.exception("the run watch could not record progress")

    def _beat(self) -> None:
        progress = {"started": self.started, "progress": self.progress}
        _write(self.state / PROGRESS_FILE, json.dumps(progress))
        _write(self.state / HEARTBEAT_FILE, str(self.clock()))


def moved(before: dict[int, int], after: dict[int, int], seconds: float) -> bool:
    """Whether the processes changed, or moved enough bytes in `seconds`, between two samples."""
    if before.keys() != after.keys():
        return True
    moved_bytes = sum(after[pid] - before[pid] for pid in after)
    return moved_bytes >= PROGRESS_BYTES_PER_S * max(seconds, 0.001)


def activity(root: int | None = None) -> dict[int, int]:
    """What the processes below `root` (default: this one) have done: each one's id and bytes
    read and written. ssh is counted by its id only: its keep-alives are no progress of a run."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, int] = {}
    todo = [root or os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), ()):
            todo.append(pid)
            found[pid] = _io_bytes(pid)
    return found


def _io_bytes(pid: int) -> int:
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "ssh":
            return 0
        counters = dict(
            line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines()
        )
        return int(counters["rchar"]) + int(counters["wchar"])
    except (OSError, ValueError, KeyError):
        return 0  # ended, or not ours to read: its start and end still count


def _write(path: Path, text: str) -> None:
    """Replace `path` atomically, so `health` never reads half a file."""
    partial = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def health(plan: BackupPlan, now: float | None = None) -> tuple[bool, str]:
    """Whether the agent is alive, and why (not): its loop or run watch beats, and a run in
    progress has moved within `health.stall_s` and is younger than `health.max_run_s`."""
    now = time.time() if now is None else now
    bounds = plan.health
    state = Path(plan.state_dir)
    try:
        beat = float((state / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        return False, "the agent has not beaten its heartbeat yet"
    if now - beat >= 4 * bounds.beat_s + 5:
        return False, f"the agent's last heartbeat is {now - beat:.0f} s old"
    try:
        run = json.loads((state / PROGRESS_FILE).read_text())
        started, progress = float(run["started"]), float(run["progress"])
    except (OSError, ValueError, KeyError, TypeError):
        return True, "waiting for the next run"
    if now - started > bounds.max_run_s:
        return False, (
            f"the run started {now - started:.0f} s ago, over health.max_run_s "
            f"({bounds.max_run_s:g} s)"
        )
    if now - progress > bounds.stall_s:
        return False, (
            f"the run made no progress for {now - progress:.0f} s, over health.stall_s "
            f"({bounds.stall_s:g} s)"
        )
    return True, f"a run is going on for {now - started:.0f} s, moved {now - progress:.0f} s ago"


def healthy(plan: BackupPlan, now: float | None = None) -> bool:
    """`health` without the reason."""
    return health(plan, now)[0]


def _exit_on_signals() -> None:
    """SIGTERM (docker stop) ends the agent as SIGINT does, also as PID 1 of its container
    (which ignores signals it has no handler for): a running restic is killed with it."""
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))


def dispatch(plan: BackupPlan, args) -> tuple[object, int]:
    """Run the parsed command; returns (JSON-able result, exit code)."""
    command = args.command
    if command == "agent":
        _exit_on_signals()
        serve_metrics(plan)
        loop(plan)
        return None, 0
    if command == "health":
        ok, reason = health(plan)
        return {"healthy": ok, "reason": reason}, 0 if ok else 1
    if command == "run":
        outcome = run_backup(plan)
        return outcome.state.model_dump(), 0 if outcome.state.success else 1
    if command == "list":
        found = listing(plan, repository(plan))
        return {
            "runs": [
                {
                    "run_id": m.run_id,
                    "snapshot": m.snapshot,
                    "started": m.started,
                    "ok": m.ok,
                    "bytes": m.bytes,
                    "services": {name: r.status for name, r in m.services.items()},
                }
                for m in found.runs
            ],
            "unreadable": [
                {"snapshot": u.snapshot, "run_id": u.run_id, "error": u.error}
                for u in found.unreadable
            ],
        }, 0
    if command == "verify":
        verify(plan, repository(plan), full=args.full)
        return {"check": "ok", "full": args.full}, 0
    if command == "prune":
        unreadable = prune(plan, repository(plan))
        return {"prune": "ok", "unreadable": [u.snapshot for u in unreadable]}, 0
    if command == "init":
        return _init(plan), 0
    if command == "restore":
        try:
            if args.to is not None:
                return restore_to(plan, args.to, args.into, args.service, args.workdir), 0
            report = restore(
                plan, args.snapshot, args.into, args.service, force=args.force, verify=args.verify
            )
        except (RestoreError, pitr.PitrError) as error:
            raise CommandError(str(error)) from None
        return report, 0
    if command == "drill":
        try:
            report = drill(plan, args.snapshot, workdir=args.workdir, data_bytes=args.data_bytes)
        except RestoreError as error:
            raise CommandError(str(error)) from None
        return report.model_dump() | {"ok": report.ok}, 0 if report.ok else 1
    raise CommandError(f"unknown command {command}")


def _init(plan: BackupPlan) -> dict:
    restic = repository(plan)
    open_repository(restic)
    result: dict[str, object] = {"repository": restic.url}
    if plan.offsite is not None:
        access, secret = offsite.credentials(plan.offsite.repository)
        report = offsite.prepare_bucket(plan.offsite, access, secret)
        result["offsite_bucket"] = {"bucket": report.bucket, "problems": report.problems}
        if not report.ok:
            raise CommandError(f"offsite bucket {report.bucket}: " + "; ".join(report.problems))
    return result
