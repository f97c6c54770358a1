"""The agent: the scheduler loop of the container, its health, and the commands it answers."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from components.model.plan import BackupPlan
from napdms_ops.backup import offsite
from napdms_ops.backup.drill import drill
from napdms_ops.backup.manifest import manifests
from napdms_ops.backup.metrics import METRICS_FILE
from napdms_ops.backup.restore import RestoreError, restore
from napdms_ops.backup.run import RunLocked, open_repository, prune, repository, run_backup, verify

HEARTBEAT_FILE = "agent.alive"
HEARTBEAT_S = 30
"""The loop touches its heartbeat this often; `health` fails after four missed beats."""


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
) -> None:
    """Wait for each scheduled time and run; beat the heartbeat meanwhile.

    `runs` bounds it for tests.
    """
    heartbeat = Path(plan.state_dir) / HEARTBEAT_FILE
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    while runs is None or done < runs:
        due = next_run(plan, clock())
        while clock() < due:
            heartbeat.write_text(str(clock()))
            sleep(min(HEARTBEAT_S, max(due - clock(), 0)))
        heartbeat.write_text(str(clock()))
        try:
            run_backup(plan)
        except RunLocked:
            pass  # a manual run is going on; it records its own result
        done += 1


def healthy(plan: BackupPlan, now: float | None = None) -> bool:
    """The loop beat its heartbeat recently."""
    try:
        beat = float((Path(plan.state_dir) / HEARTBEAT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (now or time.time()) - beat < 4 * HEARTBEAT_S + 5


def dispatch(plan: BackupPlan, args) -> tuple[object, int]:
    """Run the parsed command; returns (JSON-able result, exit code)."""
    command = args.command
    if command == "agent":
        serve_metrics(plan)
        loop(plan)
        return None, 0
    if command == "health":
        ok = healthy(plan)
        return {"healthy": ok}, 0 if ok else 1
    if command == "run":
        outcome = run_backup(plan)
        return outcome.state.model_dump(), 0 if outcome.state.success else 1
    if command == "list":
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
                for m in manifests(plan, repository(plan))
            ]
        }, 0
    if command == "verify":
        verify(plan, repository(plan), full=args.full)
        return {"check": "ok", "full": args.full}, 0
    if command == "prune":
        prune(plan, repository(plan))
        return {"prune": "ok"}, 0
    if command == "init":
        return _init(plan), 0
    if command == "restore":
        try:
            report = restore(
                plan, args.snapshot, args.into, args.service, force=args.force, verify=args.verify
            )
        except RestoreError as error:
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
