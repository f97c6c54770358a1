"""Continuous archiving of PostgreSQL's WAL while the agent runs (see `pitr` for the layout).

Per PostgreSQL source with `wal`, the agent's loop keeps an `Archiver`: a receiver thread that
keeps `pg_receivewal` streaming into the spool over the replication slot (restarted with a
back-off when it ends), and a shipper thread that backs the spool up every `ship_interval_s` and
sets a restore point with table sums at random moments. What it did is a small state file the
metrics render (`WalState`), so Prometheus sees the archive's age and failures.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from components.model.plan import BackupPlan, PostgresqlSource
from napdms_ops.backup import hooks, pitr
from napdms_ops.backup.hooks import HookContext
from napdms_ops.backup.metrics import family
from napdms_ops.backup.restic import Restic, ResticError

log = logging.getLogger(__name__)

RESTART_MIN_S = 2.0
RESTART_MAX_S = 30.0
"""pg_receivewal is started again after 2, 4, 8, ... seconds, at most 30: every second without it
adds to the recovery point (the slot keeps the WAL meanwhile)."""
STREAMED_S = 5.0
"""A pg_receivewal that ran this long had connected and streamed (a refused one ends at once)."""
MARKER_RETRY_S = 300.0
"""A restore point that failed (a writer held a table past the lock timeout) is tried again this
much later, not a whole interval later."""
# The server removed WAL the slot should have kept (max_slot_wal_keep_size reached while the
# agent was away): the slot is useless, the archive has a gap until the next base backup.
_SLOT_LOST = ("has already been removed", "can no longer get changes", "slot is invalidated")
# The spool is ahead of the server: a recovered cluster (on a new timeline, at an earlier
# position) was put in place. Streaming can only go on from the server's own position.
_SPOOL_AHEAD = ("is ahead of the WAL flush position", "is not in this server's history")


def start_over_needed(why: str) -> str | None:
    """Why pg_receivewal cannot go on from its spool (None: a restart will do): `lost` when the
    server dropped WAL first, `ahead` when the spool is ahead of the server."""
    if any(marker in why for marker in _SLOT_LOST):
        return "lost"
    if any(marker in why for marker in _SPOOL_AHEAD):
        return "ahead"
    return None


class WalState(BaseModel):
    """What the archiver of one service did last, for the metrics and `status`."""

    service: str
    last_ship: float | None = None
    """Unix time of the newest spool state that reached the repository."""
    newest_segment: str | None = None
    ship_failures: int = 0
    """Ships that failed since the agent started (a counter)."""
    receiver_restarts: int = 0
    receiving: bool = False
    """pg_receivewal is running (streaming, or connecting)."""
    slot_lost: int = 0
    """Times the server dropped WAL before the agent had it: each is a gap in the archive."""
    last_marker: float | None = None
    marker_failures: int = 0
    last_base: float | None = None
    last_base_bytes: int | None = None
    epoch_began: float | None = None
    down_since: float | None = None
    """When pg_receivewal last stopped after streaming: a server put in place begins after it."""
    timelines: dict[str, float] = {}
    """Timelines the server went on on (a recovered cluster put in place), with the moment the
    old server had stopped streaming: every shipment says them (`timeline-N=`)."""
    """When the spool's current state began (emptied after lost WAL or a new timeline, trimmed
    after a base backup): each shipment says it (`since=`)."""


def state_file(state_dir: str, service: str) -> Path:
    """Where the archiver of `service` keeps its `WalState`."""
    return Path(state_dir) / f"wal-{service}.json"


def read_state(state_dir: str, service: str) -> WalState:
    """The archiver's state (a fresh one when none was written yet or it is unreadable)."""
    try:
        return WalState.model_validate_json(state_file(state_dir, service).read_text())
    except (OSError, ValueError):
        return WalState(service=service)


def _write_state(state_dir: str, state: WalState) -> None:
    path = state_file(state_dir, state.service)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.model_dump_json())
    os.replace(temporary, path)


_state_lock = threading.Lock()


def update_state(
    state_dir: str, service: str, change: Callable[[WalState], dict[str, object]]
) -> WalState:
    """Change the service's state file: `change` gets the current state and returns the fields
    to set (read, change and replace under one lock, so counters never lose a step)."""
    with _state_lock, _file_lock(Path(state_dir) / f"wal-{service}.state.lock"):
        state = read_state(state_dir, service)
        state = state.model_copy(update=change(state))
        _write_state(state_dir, state)
        return state


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def spool_lock(state_dir: str, service: str) -> Iterator[None]:
    """Held while the spool is shipped or trimmed: by the agent's shipper and by a run (also one
    started by hand in another process)."""
    with _file_lock(Path(state_dir) / f"wal-{service}.lock"):
        yield


@contextmanager
def repository_lock(state_dir: str, exclusive: bool) -> Iterator[None]:
    """restic 0.14 gives up at once on a repository another process locks exclusively (forget,
    prune, check). Around such steps a run holds this lock exclusively, and the shipper holds it
    shared around each backup, so a run's maintenance waits for a shipment (seconds) instead of
    failing, and a shipment never fails a run's maintenance."""
    path = Path(state_dir) / "repository.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ship_now(plan: BackupPlan, source: PostgresqlSource, restic: Restic) -> bool:
    """Ship the spool once and record it; False (and a counted failure) when it failed."""
    started = time.time()
    try:
        with (
            repository_lock(plan.state_dir, exclusive=False),
            spool_lock(plan.state_dir, source.service),
        ):
            state = read_state(plan.state_dir, source.service)
            shipped = pitr.ship(
                restic,
                Path(source.wal.spool_dir),
                plan.host_tag,
                ["napdms", f"stack={plan.stack}"],
                source.service,
                since=state.epoch_began,
                timelines=state.timelines,
            )
            segments = [
                p.name[:24]
                for p in pitr.spool_files(Path(source.wal.spool_dir))
                if not p.name.endswith(".history")
            ]
            _note_timelines(plan.state_dir, source.service, Path(source.wal.spool_dir))
    except (ResticError, OSError) as error:
        update_state(
            plan.state_dir, source.service, lambda s: {"ship_failures": s.ship_failures + 1}
        )
        log.warning("%s: shipping the WAL failed: %s", source.service, error)
        return False
    if shipped is not None:
        newest = segments[-1] if segments else None
        update_state(
            plan.state_dir,
            source.service,
            lambda s: {"last_ship": started, "newest_segment": newest},
        )
    return True


def _note_timelines(state_dir: str, service: str, spool: Path) -> None:
    """Record a timeline whose history file is new in the spool, as of when the old server
    stopped streaming (or now): recovery refuses later moments from an older timeline's base."""
    state = read_state(state_dir, service)
    new = {
        path.name[:8]: state.down_since or time.time()
        for path in pitr.spool_files(spool)
        if path.name.endswith(".history") and path.name[:8] not in state.timelines
    }
    if new:
        update_state(state_dir, service, lambda s: {"timelines": {**s.timelines, **new}})


def close_epoch(source: PostgresqlSource, context: HookContext, start_wal: str) -> None:
    """After a base backup that starts in `start_wal`: ship the spool (the old epoch then holds
    the WAL through the backup's end) and trim it to what the new base needs."""
    spool = Path(source.wal.spool_dir)
    started = time.time()
    with spool_lock(context.state_dir, source.service):
        state = read_state(context.state_dir, source.service)
        pitr.ship(
            context.restic,
            spool,
            context.host_tag,
            [t for t in context.tags if not t.startswith("run=")],
            source.service,
            since=state.epoch_began,
            timelines=state.timelines,
        )
        pitr.trim(spool, start_wal)
    update_state(
        context.state_dir, source.service, lambda s: {"last_ship": started, "epoch_began": started}
    )


def set_marker(plan: BackupPlan, source: PostgresqlSource, restic: Restic) -> pitr.Marker:
    """Set a restore point with every table's sums and keep its record in the repository."""
    # Through the registry: the hook imports this module for its base backups.
    postgresql = hooks.hook(source.hook)
    now = time.time()
    name = f"napdms-{dt.datetime.fromtimestamp(now, dt.UTC):%Y%m%dT%H%M%S.%fZ}"
    lsn, tables = postgresql.restore_point(source, name)
    marker = pitr.Marker(
        name=name,
        time=now,
        lsn=lsn,
        tables=tables,
        checksum_method=postgresql.CHECKSUM_METHOD,
    )
    pitr.store_marker(
        restic, marker, plan.host_tag, ["napdms", f"stack={plan.stack}"], source.service
    )
    return marker


class Archiver:
    """The receiver and shipper threads of one PostgreSQL source; `stop()` ends both."""

    def __init__(
        self,
        plan: BackupPlan,
        source: PostgresqlSource,
        restic: Restic,
        clock: Callable[[], float] = time.time,
    ):
        self.plan, self.source, self.restic, self.clock = plan, source, restic, clock
        self._stop = threading.Event()
        self._down_since: float | None = None
        self._receiver: subprocess.Popen | None = None
        self._threads = [
            threading.Thread(
                target=self._receive, name=f"wal-receive-{source.service}", daemon=True
            ),
            threading.Thread(target=self._ship, name=f"wal-ship-{source.service}", daemon=True),
            threading.Thread(target=self._mark, name=f"wal-mark-{source.service}", daemon=True),
        ]
        self.next_marker = self._draw_marker(clock())

    def start(self) -> Archiver:
        """Start both threads."""
        Path(self.source.wal.spool_dir).mkdir(parents=True, exist_ok=True)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop streaming (what was received stays in the spool) and shipping."""
        self._stop.set()
        receiver = self._receiver
        if receiver is not None and receiver.poll() is None:
            receiver.terminate()
        for thread in self._threads:
            thread.join(timeout)

    def _environment(self) -> dict[str, str]:
        return hooks.hook(self.source.hook).environment(self.source)

    def _receiver_argv(self, *extra: str) -> list[str]:
        source = self.source
        return [
            "pg_receivewal",
            "-h",
            source.host,
            "-p",
            str(source.port),
            "-U",
            source.user,
            "--no-password",
            "--slot",
            source.wal.slot,
            *extra,
        ]

    def _receive(self) -> None:
        delay = RESTART_MIN_S
        while not self._stop.is_set():
            started = self.clock()
            try:
                env = self._environment()
                subprocess.run(
                    self._receiver_argv("--create-slot", "--if-not-exists"),
                    env=env,
                    capture_output=True,
                    timeout=60,
                )
                self._receiver = subprocess.Popen(
                    self._receiver_argv(
                        "-D", self.source.wal.spool_dir, "--no-loop", "--synchronous"
                    ),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                update_state(
                    self.plan.state_dir, self.source.service, lambda s: {"receiving": True}
                )
                _, errors = self._receiver.communicate()
                why = (errors or "").strip().splitlines()[-1:] or ["ended"]
            except Exception as error:  # the thread must outlive any one failure
                why = [str(error)]
            if self._stop.is_set():
                return
            if self.clock() - started >= STREAMED_S or self._down_since is None:
                # It had been streaming: the server it streamed from ended here (a new timeline
                # put in place begins after this moment).
                self._down_since = self.clock()
                down = self._down_since
                update_state(
                    self.plan.state_dir,
                    self.source.service,
                    lambda s, down=down: {"down_since": down},
                )
            log.warning("%s: pg_receivewal stopped: %s", self.source.service, why[0])
            reason = start_over_needed(why[0])
            if reason is not None:
                self._start_over(reason)
            lost = reason == "lost"
            update_state(
                self.plan.state_dir,
                self.source.service,
                lambda s, lost=lost: {
                    "receiver_restarts": s.receiver_restarts + 1,
                    "slot_lost": s.slot_lost + int(lost),
                    "receiving": False,
                },
            )
            delay = (
                RESTART_MIN_S
                if self.clock() - started > RESTART_MAX_S
                else min(delay * 2, RESTART_MAX_S)
            )
            self._stop.wait(delay)

    def _start_over(self, reason: str) -> None:
        """Ship what the spool has, empty it, and stream from the server's current position on a
        new slot: after lost WAL (recovery across the gap needs the next base backup), or after
        a recovered cluster was put in place (its new timeline goes on from there)."""
        if reason == "lost":
            log.error(
                "%s: the server dropped WAL the agent had not received; the archive has a gap "
                "until the next base backup",
                self.source.service,
            )
        else:
            log.warning(
                "%s: the server is behind the WAL spool (a recovered cluster?); archiving "
                "starts again from the server's position",
                self.source.service,
            )
        ship_now(self.plan, self.source, self.restic)
        with spool_lock(self.plan.state_dir, self.source.service):
            for path in pitr.spool_files(Path(self.source.wal.spool_dir)):
                path.unlink(missing_ok=True)
            # The new spool state holds what came after the old server stopped streaming.
            began = self._down_since if self._down_since is not None else self.clock()
            update_state(self.plan.state_dir, self.source.service, lambda s: {"epoch_began": began})
        subprocess.run(
            self._receiver_argv("--drop-slot"),
            env=self._environment(),
            capture_output=True,
            timeout=60,
        )

    def _ship(self) -> None:
        while not self._stop.wait(self.source.wal.ship_interval_s):
            try:
                ship_now(self.plan, self.source, self.restic)
            except Exception:  # the thread must outlive any one failure; the age metric grows
                log.exception("%s: shipping the WAL failed unexpectedly", self.source.service)

    def _mark(self) -> None:
        """Restore points at random moments, in a thread of their own: summing every table
        takes a while and must not hold up the shipping."""
        while not self._stop.wait(max(0.0, min(self.next_marker - self.clock(), 60.0))):
            if self.clock() < self.next_marker:
                continue
            try:
                marker = set_marker(self.plan, self.source, self.restic)
                update_state(
                    self.plan.state_dir,
                    self.source.service,
                    lambda s, at=marker.time: {"last_marker": at},
                )
                self.next_marker = self._draw_marker(self.clock())
            except Exception as error:  # the thread must outlive any one failure
                update_state(
                    self.plan.state_dir,
                    self.source.service,
                    lambda s: {"marker_failures": s.marker_failures + 1},
                )
                log.warning("%s: restore point failed: %s", self.source.service, error)
                self.next_marker = self.clock() + MARKER_RETRY_S

    def _draw_marker(self, now: float) -> float:
        """A random moment within the next marker interval (uniform: any time of day is drilled
        sooner or later)."""
        return now + random.uniform(0.1, 1.0) * self.source.wal.marker_interval_s


def archivers(plan: BackupPlan, restic: Restic) -> list[Archiver]:
    """One started archiver per PostgreSQL source with `wal`."""
    return [
        Archiver(plan, source, restic).start()
        for source in plan.sources
        if isinstance(source, PostgresqlSource) and source.wal is not None
    ]


def render_metrics(plan: BackupPlan, now: float | None = None) -> str:
    """Prometheus text of every WAL archive's state, rendered at scrape time (the ages move)."""
    now = time.time() if now is None else now
    services = [
        s.service for s in plan.sources if isinstance(s, PostgresqlSource) and s.wal is not None
    ]
    if not services:
        return ""
    states = [read_state(plan.state_dir, service) for service in services]
    gauges: list[tuple[str, str, str, Callable[[WalState], float | None]]] = [
        (
            "wal_last_archived_timestamp_seconds",
            "gauge",
            "When the newest WAL (the segment being written included) reached the repository.",
            lambda s: s.last_ship,
        ),
        (
            "wal_archive_age_seconds",
            "gauge",
            "Seconds since the newest WAL reached the repository: the current recovery point.",
            lambda s: None if s.last_ship is None else max(0.0, now - s.last_ship),
        ),
        (
            "wal_archive_failures_total",
            "counter",
            "Shipments of the WAL spool that failed since the agent started.",
            lambda s: s.ship_failures,
        ),
        (
            "wal_receiver_up",
            "gauge",
            "1 while pg_receivewal runs; 0 while the agent waits to start it again.",
            lambda s: float(s.receiving),
        ),
        (
            "wal_receiver_restarts_total",
            "counter",
            "Times pg_receivewal ended and was started again.",
            lambda s: s.receiver_restarts,
        ),
        (
            "wal_gaps_total",
            "counter",
            "Times the server dropped WAL before the agent had it (a gap until the next base).",
            lambda s: s.slot_lost,
        ),
        (
            "pg_base_last_timestamp_seconds",
            "gauge",
            "When the last physical base backup ended.",
            lambda s: s.last_base,
        ),
        (
            "pg_base_last_bytes",
            "gauge",
            "Size of the last physical base backup.",
            lambda s: s.last_base_bytes,
        ),
        (
            "pg_restore_point_timestamp_seconds",
            "gauge",
            "When the last restore point with table sums was set (the drill's targets).",
            lambda s: s.last_marker,
        ),
        (
            "pg_restore_point_failures_total",
            "counter",
            "Restore points that failed since the agent started.",
            lambda s: s.marker_failures,
        ),
    ]
    lines: list[str] = []
    for short, kind, help_text, value_of in gauges:
        samples = [(s.service, value_of(s)) for s in states if value_of(s) is not None]
        if not samples:
            continue
        labelled = [(f'stack="{plan.stack}",service="{service}"', v) for service, v in samples]
        lines += family(f"napdms_backup_{short}", kind, help_text, labelled)
    return "\n".join(lines) + "\n" if lines else ""
