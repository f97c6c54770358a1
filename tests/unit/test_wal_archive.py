"""The WAL archiver's bookkeeping without a server or restic: its state file under concurrent
threads, the repository lock a run's maintenance and the shipper share, a shipment and the close
of an epoch, the metrics rendered from the state, and the PostgreSQL hook's decisions of when to
take a base backup and a logical dump."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from components.model.plan import (
    BackupPlan,
    FilesSource,
    PostgresqlSource,
    Repository,
    WalArchive,
)
from napdms_ops.backup import pitr, server_stats, wal
from napdms_ops.backup.hooks import HookContext
from napdms_ops.backup.hooks import postgresql as pg
from napdms_ops.backup.manifest import BaseBackup, Part, ServiceRecord, TableSum
from napdms_ops.backup.restic import BackupSummary, ResticError

SERVICE = "postgres"
WAIT_S = 10.0
"""Longest a test waits for another thread to get somewhere (never reached when all is well)."""


def seg(number: int) -> str:
    return f"00000001{0:08X}{number:08X}"


def source(tmp_path: Path, archived: bool = True, **wal_fields) -> PostgresqlSource:
    spool = WalArchive(spool_dir=str(tmp_path / "spool"), **wal_fields) if archived else None
    return PostgresqlSource(service=SERVICE, host="db", wal=spool)


def plan_of(tmp_path: Path, *sources) -> BackupPlan:
    return BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "pw")),
        sources=list(sources) or [source(tmp_path)],
        state_dir=str(tmp_path / "state"),
    )


# ----------------------------------------------------------------------------- state file


def test_concurrent_counter_increments_lose_no_step(tmp_path):
    state_dir = str(tmp_path / "state")
    start = threading.Barrier(8)

    def count():
        start.wait(WAIT_S)
        for _ in range(50):
            wal.update_state(state_dir, SERVICE, lambda s: {"ship_failures": s.ship_failures + 1})

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S * 6)
    assert wal.read_state(state_dir, SERVICE).ship_failures == 400, (
        "expected 8 threads x 50 increments to count 400"
    )


def test_an_unreadable_state_file_reads_as_a_fresh_state(tmp_path):
    wal.state_file(str(tmp_path), SERVICE).write_text("{not json")
    assert wal.read_state(str(tmp_path), SERVICE) == wal.WalState(service=SERVICE), (
        "expected a fresh state, not an error"
    )


def test_update_state_changes_only_the_fields_returned(tmp_path):
    wal.update_state(str(tmp_path), SERVICE, lambda s: {"last_ship": 5.0, "ship_failures": 2})
    wal.update_state(str(tmp_path), SERVICE, lambda s: {"last_marker": 7.0})
    state = wal.read_state(str(tmp_path), SERVICE)
    assert (state.last_ship, state.ship_failures, state.last_marker) == (5.0, 2, 7.0), (
        f"expected earlier fields kept across updates, got {state}"
    )


# ----------------------------------------------------------------------------- repository lock


def hold(state_dir: str, exclusive: bool, held: threading.Event, release: threading.Event):
    """A thread holding the repository lock from `held` until `release`."""

    def holder():
        with wal.repository_lock(state_dir, exclusive=exclusive):
            held.set()
            release.wait(WAIT_S)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    return thread


def test_an_exclusive_holder_waits_for_a_shared_holder(tmp_path):
    state_dir = str(tmp_path)
    shared_held, shared_release = threading.Event(), threading.Event()
    exclusive_held, exclusive_release = threading.Event(), threading.Event()
    shipper = hold(state_dir, False, shared_held, shared_release)
    assert shared_held.wait(WAIT_S), "expected the shared holder to get the lock"
    run = hold(state_dir, True, exclusive_held, exclusive_release)
    try:
        assert not exclusive_held.wait(0.3), "expected the exclusive holder to wait"
        shared_release.set()
        assert exclusive_held.wait(WAIT_S), "expected the exclusive holder in once shared left"
    finally:
        shared_release.set()
        exclusive_release.set()
        shipper.join(WAIT_S)
        run.join(WAIT_S)


def test_a_shared_holder_waits_for_an_exclusive_holder(tmp_path):
    state_dir = str(tmp_path)
    exclusive_held, exclusive_release = threading.Event(), threading.Event()
    shared_held, shared_release = threading.Event(), threading.Event()
    run = hold(state_dir, True, exclusive_held, exclusive_release)
    assert exclusive_held.wait(WAIT_S), "expected the exclusive holder to get the lock"
    shipper = hold(state_dir, False, shared_held, shared_release)
    try:
        assert not shared_held.wait(0.3), "expected a shipment to wait for a run's maintenance"
        exclusive_release.set()
        assert shared_held.wait(WAIT_S), "expected the shipment to go once maintenance ended"
    finally:
        exclusive_release.set()
        shared_release.set()
        run.join(WAIT_S)
        shipper.join(WAIT_S)


def test_shared_holders_do_not_wait_for_each_other(tmp_path):
    first_held, first_release = threading.Event(), threading.Event()
    second_held, second_release = threading.Event(), threading.Event()
    first = hold(str(tmp_path), False, first_held, first_release)
    assert first_held.wait(WAIT_S), "expected the first shared holder to get the lock"
    second = hold(str(tmp_path), False, second_held, second_release)
    try:
        assert second_held.wait(WAIT_S), "expected a second shared holder in at once"
    finally:
        first_release.set()
        second_release.set()
        first.join(WAIT_S)
        second.join(WAIT_S)


# ----------------------------------------------------------------------------- shipping


class ShippingRestic:
    """Records each backup of the spool: its tags and the files the spool held then."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.shipped: list[tuple[list[str], list[str]]] = []

    def backup_paths(self, paths, host, tags):
        if self.fail:
            raise ResticError("network", "repo", "backup", "connection lost")
        self.shipped.append((list(tags), sorted(p.name for p in Path(paths[0]).iterdir())))
        return BackupSummary(f"snap{len(self.shipped)}", 1, 1, 1, 0.1)


def spool_with(tmp_path: Path, *names: str) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    for name in names:
        (spool / name).write_bytes(b"wal")
    return spool


def test_a_shipment_tags_the_spools_first_and_last_segment(tmp_path):
    spool_with(tmp_path, seg(3), seg(4), seg(5) + ".partial", "00000001.history")
    plan = plan_of(tmp_path)
    restic = ShippingRestic()
    assert wal.ship_now(plan, plan.sources[0], restic), "expected the shipment to succeed"
    [(tags, _)] = restic.shipped
    assert {pitr.WAL_KIND, f"service={SERVICE}", f"wal-from={seg(3)}", f"wal-to={seg(5)}"} <= set(
        tags
    ), f"expected the epoch's tags (the partial segment counts as the last), got {tags}"
    state = wal.read_state(plan.state_dir, SERVICE)
    assert state.newest_segment == seg(5) and state.last_ship is not None, (
        f"expected the shipment recorded in the state, got {state}"
    )


def test_an_empty_spool_is_not_shipped(tmp_path):
    spool_with(tmp_path)
    plan = plan_of(tmp_path)
    restic = ShippingRestic()
    assert wal.ship_now(plan, plan.sources[0], restic), "expected nothing to ship to be no failure"
    assert restic.shipped == [], "expected no snapshot of an empty spool"
    assert wal.read_state(plan.state_dir, SERVICE).last_ship is None, "expected no ship recorded"


def test_a_failed_shipment_is_counted(tmp_path):
    spool_with(tmp_path, seg(3))
    plan = plan_of(tmp_path)
    assert not wal.ship_now(plan, plan.sources[0], ShippingRestic(fail=True)), "expected False"
    state = wal.read_state(plan.state_dir, SERVICE)
    assert (state.ship_failures, state.last_ship) == (1, None), (
        f"expected one counted failure and no ship recorded, got {state}"
    )


def test_closing_an_epoch_ships_the_spool_before_trimming_it(tmp_path):
    spool = spool_with(tmp_path, seg(3), seg(4), seg(5), seg(6) + ".partial")
    restic = ShippingRestic()
    context = HookContext(
        restic=restic,
        host_tag="napdms-dev",
        tags=["napdms", "stack=dev", "run=r1"],
        state_dir=str(tmp_path / "state"),
    )
    wal.close_epoch(source(tmp_path), context, seg(5))
    [(tags, shipped)] = restic.shipped
    assert shipped == [seg(3), seg(4), seg(5), seg(6) + ".partial"], (
        "expected the old epoch shipped whole, before the trim"
    )
    assert "run=r1" not in tags, "expected the WAL snapshot to belong to no run (prune skips runs)"
    assert sorted(p.name for p in spool.iterdir()) == [seg(5), seg(6) + ".partial"], (
        "expected the spool trimmed to the new base's start"
    )


# ----------------------------------------------------------------------------- metrics


def test_metrics_name_each_archive_by_stack_and_service(tmp_path):
    plan = plan_of(tmp_path)
    wal.update_state(plan.state_dir, SERVICE, lambda s: {"last_ship": 1000.0, "ship_failures": 3})
    text = wal.render_metrics(plan, now=1042.5)
    labels = f'{{stack="dev",service="{SERVICE}"}}'
    for line in (
        f"napdms_backup_wal_last_archived_timestamp_seconds{labels} 1000",
        f"napdms_backup_wal_archive_age_seconds{labels} 42.500",
        f"napdms_backup_wal_archive_failures_total{labels} 3",
        f"napdms_backup_wal_receiver_restarts_total{labels} 0",
        f"napdms_backup_wal_gaps_total{labels} 0",
        f"napdms_backup_pg_restore_point_failures_total{labels} 0",
    ):
        assert line in text.splitlines(), f"expected the sample {line!r} in:\n{text}"


def test_metrics_type_the_counters_as_counters_and_the_rest_as_gauges(tmp_path):
    plan = plan_of(tmp_path)
    wal.update_state(plan.state_dir, SERVICE, lambda s: {"last_ship": 1000.0})
    types = dict(
        line.split()[2:4]
        for line in wal.render_metrics(plan, 1001).splitlines()
        if " TYPE " in line
    )
    wrong = {
        name: kind for name, kind in types.items() if name.endswith("_total") != (kind == "counter")
    }
    assert types and not wrong, f"expected *_total typed counter and the others gauge: {wrong}"


def test_metrics_leave_out_what_never_happened(tmp_path):
    plan = plan_of(tmp_path)
    text = wal.render_metrics(plan, now=1000)
    assert "wal_archive_age_seconds" not in text and "pg_base_last" not in text, (
        f"expected no age or base gauge before the first shipment and base backup:\n{text}"
    )
    assert "napdms_backup_wal_archive_failures_total" in text, "expected the counters at zero"


def test_metrics_of_a_plan_without_wal_are_empty(tmp_path):
    plan = plan_of(
        tmp_path,
        source(tmp_path, archived=False),
        FilesSource(service="files", paths=[str(tmp_path)]),
    )
    assert wal.render_metrics(plan, now=1000) == "", "expected no WAL metrics without any wal"


# ----------------------------------------------------------------------------- hook decisions


class Calls:
    """The PostgreSQL hook with its server and repository replaced by recorders."""

    def __init__(self, monkeypatch, changes: str):
        self.bases: list[str] = []
        self.dumps: list[str] = []
        monkeypatch.setattr(pg, "environment", lambda source, host=None: {})
        monkeypatch.setattr(pg, "_query", self._query(changes))
        monkeypatch.setattr(pg, "_base_backup", self._base_backup)
        monkeypatch.setattr(pg, "_dump", self._dump)

    @staticmethod
    def _query(changes):
        def query(env, database, sql):
            assert sql == pg._CHANGES, f"unexpected query {sql}"
            return [changes]

        return query

    def _base_backup(self, source, env, context):
        self.bases.append(source.service)
        return new_parts("base-new")[0], BaseBackup(
            part="base-new", start_wal=seg(9), finished=time.time()
        )

    def _dump(self, source, env, context):
        self.dumps.append(source.service)
        return new_parts("globals-new", "db-new"), {
            "app": {"public.t": TableSum(rows=1, checksum="1")}
        }


def new_parts(*ids: str) -> list[Part]:
    return [Part(snapshot=i, path=f"/{SERVICE}/{i}", files=1, bytes=10, bytes_added=5) for i in ids]


def previous(changes="100@app:", dumped_days_ago: float | None = 1, with_base=True):
    base = BaseBackup(part="base-old", start_wal=seg(3), finished=1.0) if with_base else None
    return ServiceRecord(
        service=SERVICE,
        hook="postgresql",
        status="ok",
        parts=new_parts("globals-old", "db-old", *(["base-old"] if with_base else [])),
        tables={"app": {"public.t": TableSum(rows=0, checksum="0")}},
        checksum_method=pg.CHECKSUM_METHOD,
        base=base,
        dumped=None if dumped_days_ago is None else time.time() - dumped_days_ago * 86400,
        changes=changes,
    )


def back_up(tmp_path, src, before: ServiceRecord | None) -> ServiceRecord:
    context = HookContext(
        restic=None,
        host_tag="napdms-dev",
        tags=["napdms", "stack=dev", "run=r2"],
        state_dir=str(tmp_path / "state"),
        previous={SERVICE: before} if before else {},
    )
    return pg.backup(src, context)


def snapshots(record: ServiceRecord) -> list[str]:
    return [p.snapshot for p in record.parts]


def test_an_unchanged_server_keeps_the_previous_runs_base_and_dump(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="100@app:")
    before = previous()
    record = back_up(tmp_path, source(tmp_path), before)
    assert (calls.bases, calls.dumps) == ([], []), "expected neither a base backup nor a dump"
    assert snapshots(record) == snapshots(before) and record.base == before.base, (
        "expected the previous run's parts and base reused"
    )
    assert (record.dumped, record.tables) == (before.dumped, before.tables), (
        "expected the previous dump's time and sums kept"
    )


def test_a_changed_server_gets_a_base_backup_and_keeps_a_recent_dump(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="101@app:")
    before = previous(dumped_days_ago=1)
    record = back_up(tmp_path, source(tmp_path, logical_dump_days=7), before)
    assert (calls.bases, calls.dumps) == ([SERVICE], []), "expected a base backup and no dump"
    assert record.base is not None and record.base.part == "base-new", "expected the new base"
    assert [p.snapshot for p in record.logical_parts] == ["globals-old", "db-old"], (
        "expected the previous logical dump kept beside the new base"
    )
    assert (record.dumped, record.tables, record.changes) == (
        before.dumped,
        before.tables,
        "101@app:",
    ), "expected the kept dump's time and sums and the new change count recorded"


def test_a_changed_server_is_dumped_once_the_dump_is_logical_dump_days_old(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="101@app:")
    record = back_up(tmp_path, source(tmp_path, logical_dump_days=7), previous(dumped_days_ago=7))
    assert (calls.bases, calls.dumps) == ([SERVICE], [SERVICE]), "expected a base and a dump"
    assert sorted(snapshots(record)) == ["base-new", "db-new", "globals-new"], (
        "expected only this run's parts"
    )
    assert record.dumped is not None and time.time() - record.dumped < 60, (
        "expected the dump's time to be now"
    )


def test_the_first_run_with_wal_takes_a_base_and_a_dump(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="1@app:")
    record = back_up(tmp_path, source(tmp_path), None)
    assert (calls.bases, calls.dumps) == ([SERVICE], [SERVICE]), "expected a base and a dump"
    assert [p.snapshot for p in record.logical_parts] == ["globals-new", "db-new"], (
        "expected the base backup apart from the logical parts"
    )


def test_an_unchanged_server_whose_previous_run_had_no_base_gets_one(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="100@app:")
    back_up(tmp_path, source(tmp_path), previous(with_base=False))
    assert calls.bases == [SERVICE], "expected a base backup once the WAL is archived"


def test_a_kept_dump_keeps_the_checksum_method_of_its_sums(tmp_path, monkeypatch):
    Calls(monkeypatch, changes="101@app:")
    before = previous(dumped_days_ago=1).model_copy(update={"checksum_method": "md5-older-agent"})
    record = back_up(tmp_path, source(tmp_path, logical_dump_days=7), before)
    assert record.checksum_method == "md5-older-agent", (
        "expected the reused sums to keep the method they were computed with"
    )


def test_without_wal_a_changed_server_is_dumped_whatever_the_dumps_age(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="101@app:")
    record = back_up(
        tmp_path, source(tmp_path, archived=False), previous(dumped_days_ago=0, with_base=False)
    )
    assert (calls.bases, calls.dumps) == ([], [SERVICE]), "expected a dump and no base backup"
    assert record.base is None and sorted(snapshots(record)) == ["db-new", "globals-new"]


def test_without_wal_an_unchanged_server_is_not_dumped(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="100@app:")
    before = previous(with_base=False)
    record = back_up(tmp_path, source(tmp_path, archived=False), before)
    assert (calls.bases, calls.dumps) == ([], []), "expected neither a dump nor a base backup"
    assert snapshots(record) == snapshots(before), "expected the previous dump reused"


def test_without_wal_the_first_run_is_dumped(tmp_path, monkeypatch):
    calls = Calls(monkeypatch, changes="100@app:")
    back_up(tmp_path, source(tmp_path, archived=False), None)
    assert calls.dumps == [SERVICE], "expected a dump when there is no previous run"


@pytest.mark.parametrize(
    "message, reason",
    [
        (
            'pg_receivewal: error: could not send replication command "START_REPLICATION": '
            "ERROR:  requested WAL segment 000000010000000000000003 has already been removed",
            "lost",
        ),
        (
            "pg_receivewal: error: ERROR:  can no longer get changes from replication slot "
            '"napdms_backup"',
            "lost",
        ),
        (
            "pg_receivewal: error: ERROR:  requested starting point 0/5000000 on timeline 2 is "
            "ahead of the WAL flush position of this server 0/3000148",
            "ahead",
        ),
        (
            "pg_receivewal: error: ERROR:  requested starting point 0/5000000 on timeline 1 is "
            "not in this server's history",
            "ahead",
        ),
        ("pg_receivewal: error: could not connect to server: Connection refused", None),
        ("pg_receivewal: error: disconnected", None),
    ],
)
def test_the_receiver_starts_over_only_when_its_spool_cannot_go_on(message, reason):
    assert wal.start_over_needed(message) == reason, f"{message!r} calls for {reason}"


def test_a_new_timeline_in_the_spool_is_recorded_as_of_when_the_old_server_stopped(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "00000002.history").write_text("1\t0/3000148\tno recovery target specified\n")
    wal.update_state(str(tmp_path), "postgres", lambda s: {"down_since": 1000.0})
    wal._note_timelines(str(tmp_path), "postgres", spool)
    wal.update_state(str(tmp_path), "postgres", lambda s: {"down_since": 2000.0})
    wal._note_timelines(str(tmp_path), "postgres", spool)
    timelines = wal.read_state(str(tmp_path), "postgres").timelines
    assert timelines == {"00000002": 1000.0}, f"expected timeline 2 as of 1000 once, {timelines}"


def test_connection_metrics_name_each_server_and_its_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(server_stats, "connections", lambda source: (7.0, 100.0))
    text = server_stats.render_metrics(plan_of(tmp_path))
    labels = f'{{stack="dev",service="{SERVICE}"}}'
    for line in (
        f"napdms_backup_pg_up{labels} 1",
        f"napdms_backup_pg_connections{labels} 7",
        f"napdms_backup_pg_max_connections{labels} 100",
    ):
        assert line in text.splitlines(), f"expected {line!r} in the connection metrics"


def test_a_server_the_agent_cannot_ask_reads_as_down_without_counts(tmp_path, monkeypatch):
    monkeypatch.setattr(server_stats, "connections", lambda source: None)
    text = server_stats.render_metrics(plan_of(tmp_path))
    assert f'napdms_backup_pg_up{{stack="dev",service="{SERVICE}"}} 0' in text.splitlines()
    assert "napdms_backup_pg_connections" not in text, "expected no count for an unread server"
