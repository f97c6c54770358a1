"""Point-in-time recovery's layout, judged without a server or restic: the spool's WAL order and
trim, the epochs of the archive, which base backup and which epochs a recovery takes, how the
restored WAL is laid out, what retention forgets, the manifests' new fields, and the refusals of
`restore --to`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import pytest

from components.model.plan import BackupPlan, PostgresqlSource, Repository, WalArchive
from napdms_ops.backup import hooks, pitr, run
from napdms_ops.backup.hooks import HookContext
from napdms_ops.backup.manifest import (
    MANIFEST_PATH,
    MANIFEST_TAG,
    BaseBackup,
    Part,
    RunManifest,
    ServiceRecord,
    TableSum,
)
from napdms_ops.backup.pitr import Epoch, PitrError
from napdms_ops.backup.restic import ResticError, Snapshot
from napdms_ops.backup.restore import RestoreError, restore_to

HOST = "napdms-dev"
SERVICE = "postgres"
T0 = 1_900_000_000.0
"""A fixed moment (2030-03-17) the fake repository's times count from."""


def seg(number: int, timeline: int = 1) -> str:
    """The WAL segment file name of `number` on `timeline` (16 MB segments)."""
    return f"{timeline:08X}{number >> 8:08X}{number & 0xFF:08X}"


def restic_time(moment: float) -> str:
    """A time as `restic snapshots --json` prints it (nanoseconds, UTC)."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f123Z")


def wal_snapshot(
    snapshot_id: str, wal_from: str | None, wal_to: str | None, moment: float
) -> Snapshot:
    """A shipment of the spool, as `pitr.ship` tags it."""
    tags = ["napdms", "stack=dev", pitr.WAL_KIND, f"service={SERVICE}"]
    tags += [f"wal-from={wal_from}"] if wal_from else []
    tags += [f"wal-to={wal_to}"] if wal_to else []
    return Snapshot(snapshot_id, restic_time(moment), ("/spool",), tuple(tags), HOST)


def marker_snapshot(snapshot_id: str, moment: float) -> Snapshot:
    """A restore point's record, as `pitr.store_marker` tags it."""
    tags = ("napdms", "stack=dev", pitr.MARKER_KIND, f"service={SERVICE}", f"marker=m{moment}")
    return Snapshot(snapshot_id, restic_time(moment), (f"/{SERVICE}/marker.json",), tags, HOST)


class FakeRestic:
    """A repository of given snapshots; records forgets, restores and forget --prune runs.

    `files`: per snapshot id, the files a restore writes (absolute path in the snapshot -> bytes),
    recreated under the target as restic does. `dumps`: per snapshot id, what `dump` returns.
    `keep`: the manifest ids restic's own policy keeps (`forget --dry-run`).
    """

    def __init__(self, listed=(), files=None, dumps=None, keep=()):
        self.listed = list(listed)
        self.files = files or {}
        self.dumps = dumps or {}
        self.keep = list(keep)
        self.forgotten: list[tuple[str, ...]] = []
        self.pruned: list[str] = []
        self.restored: list[tuple[str, str, bool]] = []

    def snapshots(self, host=None, tags=()):
        return [
            s
            for s in self.listed
            if (host is None or s.hostname == host) and all(t in s.tags for t in tags)
        ]

    def forget(self, *snapshot_ids):
        self.forgotten.append(snapshot_ids)

    def restore(self, snapshot_id, target, verify=False):
        self.restored.append((snapshot_id, target, verify))
        for path, data in self.files.get(snapshot_id, {}).items():
            written = Path(target) / path.lstrip("/")
            written.parent.mkdir(parents=True, exist_ok=True)
            written.write_bytes(data)

    def dump(self, snapshot_id, path):
        return self.dumps[snapshot_id]

    def run_unlocking(self, *args, action=None):
        if "--dry-run" in args:
            return json.dumps([{"keep": [{"id": i} for i in self.keep]}])
        assert args[:2] == ("forget", "--prune"), f"unexpected restic call {args}"
        self.pruned += args[2:]
        return ""


def touch(spool: Path, *names: str) -> None:
    spool.mkdir(parents=True, exist_ok=True)
    for name in names:
        (spool / name).write_bytes(name.encode())


# ----------------------------------------------------------------------------- the spool


def test_spool_files_are_in_wal_order_across_timelines(tmp_path):
    touch(tmp_path, seg(5), seg(0x103, timeline=2), seg(4), seg(0x102))
    assert [p.name for p in pitr.spool_files(tmp_path)] == [
        seg(4),
        seg(5),
        seg(0x102),
        seg(0x103, timeline=2),
    ], "expected segments ordered by position (log and segment), whatever their timeline"


def test_spool_files_put_a_partial_segment_after_its_predecessors(tmp_path):
    touch(tmp_path, seg(7) + ".partial", seg(6), seg(5))
    assert [p.name for p in pitr.spool_files(tmp_path)] == [
        seg(5),
        seg(6),
        seg(7) + ".partial",
    ], "expected the partial segment being written to come after the completed ones"


def test_spool_files_put_history_files_last(tmp_path):
    touch(tmp_path, "00000002.history", seg(9, timeline=2), seg(8))
    names = [p.name for p in pitr.spool_files(tmp_path)]
    assert names[-1] == "00000002.history", f"expected the history file last, got {names}"


def test_spool_files_ignore_what_is_no_wal_file(tmp_path):
    touch(tmp_path, seg(3), seg(4) + ".partial.tmp", seg(5) + ".tmp", "notes.txt")
    (tmp_path / "archive_status").mkdir()
    assert [p.name for p in pitr.spool_files(tmp_path)] == [seg(3)], (
        "expected temporary files, stray files and archive_status to be ignored"
    )


def test_spool_files_of_a_missing_spool_are_none(tmp_path):
    assert pitr.spool_files(tmp_path / "never-created") == [], "expected no files, no error"


def test_trim_drops_the_segments_before_the_base_start_and_of_older_timelines(tmp_path):
    touch(tmp_path, seg(3), seg(4, timeline=2), seg(5), seg(6), seg(6, timeline=2))
    dropped = pitr.trim(tmp_path, seg(5, timeline=2))
    assert sorted(dropped) == sorted([seg(3), seg(4, timeline=2), seg(5), seg(6)]), (
        f"expected the segments before position 5 and timeline 1's dropped, got {dropped}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [seg(6, timeline=2)], (
        "expected only the dropped segments gone from the spool"
    )


def test_trim_keeps_the_start_segment_later_partials_and_history_files(tmp_path):
    touch(tmp_path, seg(4), seg(5), seg(6) + ".partial", "00000001.history")
    pitr.trim(tmp_path, seg(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [seg(5), seg(6) + ".partial", "00000001.history"]
    ), "expected the base's start segment, the partial after it and history files kept"


# ----------------------------------------------------------------------------- epochs


def test_epochs_group_the_shipments_of_one_spool_state_by_wal_from():
    restic = FakeRestic(
        [
            wal_snapshot("a1", seg(1), seg(3), T0),
            wal_snapshot("b1", seg(5), seg(6), T0 + 300),
            wal_snapshot("a2", seg(1), seg(4), T0 + 60),
        ]
    )
    found = {
        e.wal_from: {e.newest.id, *(s.id for s in e.superseded)}
        for e in pitr.epochs(restic, HOST, SERVICE)
    }
    assert found == {seg(1): {"a1", "a2"}, seg(5): {"b1"}}, f"expected two epochs, got {found}"


def test_an_epochs_newest_snapshot_is_the_one_reaching_furthest():
    restic = FakeRestic(
        [
            wal_snapshot("far", seg(1), seg(9), T0),
            wal_snapshot("later-but-shorter", seg(1), seg(4), T0 + 60),
            wal_snapshot("middle", seg(1), seg(6), T0 + 30),
        ]
    )
    [epoch] = pitr.epochs(restic, HOST, SERVICE)
    assert (epoch.newest.id, epoch.wal_to) == ("far", seg(9)), (
        "expected the snapshot with the highest wal-to to be the epoch's newest"
    )
    assert sorted(s.id for s in epoch.superseded) == ["later-but-shorter", "middle"], (
        "expected every other snapshot of the epoch superseded"
    )


def test_epochs_are_ordered_by_position_not_by_name_or_listing():
    restic = FakeRestic(
        [
            wal_snapshot("third", seg(0x200), seg(0x201), T0 + 20),
            wal_snapshot("second", seg(0x110, timeline=2), seg(0x111, timeline=2), T0 + 10),
            wal_snapshot("first", seg(0x100, timeline=3), seg(0x101, timeline=3), T0),
        ]
    )
    assert [e.newest.id for e in pitr.epochs(restic, HOST, SERVICE)] == [
        "first",
        "second",
        "third",
    ], "expected epochs ordered by the position of their first segment"


def test_epochs_ignore_snapshots_missing_the_wal_tags_and_other_services():
    other = Snapshot("other", restic_time(T0), ("/spool",), (pitr.WAL_KIND, "service=x"), HOST)
    restic = FakeRestic(
        [
            wal_snapshot("no-from", None, seg(3), T0),
            wal_snapshot("no-to", seg(1), None, T0),
            wal_snapshot("good", seg(1), seg(2), T0),
            other,
        ]
    )
    found = [(e.newest.id, len(e.superseded)) for e in pitr.epochs(restic, HOST, SERVICE)]
    assert found == [("good", 0)], f"expected only the fully tagged snapshot, got {found}"


# ----------------------------------------------------------------------------- recovery choices


def base(start: int, finished: float, part: str = "") -> BaseBackup:
    return BaseBackup(part=part or f"base-{start}", start_wal=seg(start), finished=finished)


def run_with(
    run_id: str, started: float, record: ServiceRecord | None = None, snapshot: str | None = None
) -> RunManifest:
    return RunManifest(
        run_id=run_id,
        stack="dev",
        host_tag=HOST,
        started=started,
        finished=started + 60,
        attempts=1,
        services={SERVICE: record} if record else {},
        snapshot=snapshot,
    )


def pg_record(base_backup: BaseBackup | None, status="ok", parts=()) -> ServiceRecord:
    return ServiceRecord(
        service=SERVICE, hook="postgresql", status=status, parts=list(parts), base=base_backup
    )


def test_choose_base_takes_the_newest_base_that_ended_before_the_moment():
    runs = [
        run_with("r1", T0, pg_record(base(1, T0 + 10))),
        run_with("r2", T0 + 86400, pg_record(base(9, T0 + 86410))),
        run_with("r3", T0 + 2 * 86400, pg_record(base(17, T0 + 2 * 86400 + 10))),
    ]
    chosen, chosen_base = pitr.choose_base(runs, SERVICE, T0 + 86410 + 5)
    assert (chosen.run_id, chosen_base.start_wal) == ("r2", seg(9)), (
        "expected the base of r2, the newest that ended before the moment"
    )


def test_choose_base_skips_failed_runs_and_runs_without_a_base():
    runs = [
        run_with("r1", T0, pg_record(base(1, T0 + 10))),
        run_with("r2", T0 + 100, pg_record(None)),
        run_with("r3", T0 + 200, pg_record(base(5, T0 + 210), status="failed")),
    ]
    chosen, _ = pitr.choose_base(runs, SERVICE, T0 + 1000)
    assert chosen.run_id == "r1", f"expected r1, the only usable base, got {chosen.run_id}"


def test_choose_base_before_every_base_names_the_oldest_bases_end():
    runs = [
        run_with("r1", T0, pg_record(base(1, T0 + 10))),
        run_with("r2", T0 + 86400, pg_record(base(9, T0 + 86410))),
    ]
    oldest_end = dt.datetime.fromtimestamp(T0 + 10, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    with pytest.raises(PitrError, match=f"oldest base backup ended at {oldest_end}"):
        pitr.choose_base(runs, SERVICE, T0 + 5)


def test_choose_base_without_any_base_says_a_run_takes_one():
    runs = [run_with("r1", T0, pg_record(None))]
    with pytest.raises(PitrError, match="no base backup.*next scheduled run takes one"):
        pitr.choose_base(runs, SERVICE, T0 + 1000)


def epoch(wal_from: int, wal_to: int, shipped: float, name: str = "") -> Epoch:
    newest = wal_snapshot(name or f"e{wal_from}", seg(wal_from), seg(wal_to), shipped)
    return Epoch(seg(wal_from), seg(wal_to), newest, ())


def test_choose_epochs_starts_with_the_epoch_holding_the_bases_start():
    found = [epoch(1, 4, T0 + 100), epoch(5, 9, T0 + 200), epoch(10, 12, T0 + 300)]
    chosen = pitr.choose_epochs(found, base(7, T0 + 150), T0 + 400)
    assert [e.wal_from for e in chosen] == [seg(5), seg(10)], (
        "expected the epochs from the one holding segment 7 on"
    )


def test_choose_epochs_stops_after_the_first_epoch_shipped_after_the_moment():
    found = [
        epoch(5, 9, T0 + 200),
        epoch(10, 12, T0 + 300),
        epoch(13, 14, T0 + 400),
        epoch(15, 16, T0 + 500),
    ]
    chosen = pitr.choose_epochs(found, base(5, T0 + 150), T0 + 350)
    assert [e.wal_from for e in chosen] == [seg(5), seg(10), seg(13)], (
        "expected the epochs up to and including the first one shipped after the moment"
    )


def test_choose_epochs_refuses_a_base_whose_start_is_not_archived():
    found = [epoch(10, 12, T0 + 300), epoch(13, 14, T0 + 400)]
    with pytest.raises(PitrError, match=f"lacks segment {seg(7)}.*pick a later moment"):
        pitr.choose_epochs(found, base(7, T0 + 150), T0 + 350)


def test_choose_epochs_refuses_an_archive_that_ends_before_the_bases_start():
    with pytest.raises(PitrError, match=f"lacks segment {seg(7)}"):
        pitr.choose_epochs([epoch(1, 4, T0 + 100)], base(7, T0 + 150), T0 + 350)


def test_choose_epochs_keeps_to_the_bases_timeline():
    later_line = Epoch(
        seg(6, 2), seg(8, 2), wal_snapshot("tl2", seg(6, 2), seg(8, 2), T0 + 900), ()
    )
    found = [epoch(5, 9, T0 + 200), later_line, epoch(10, 12, T0 + 300)]
    chosen = pitr.choose_epochs(found, base(5, T0 + 150), T0 + 250)
    assert [e.wal_from for e in chosen] == [seg(5), seg(10)], "expected timeline 1's epochs only"


def test_choose_epochs_refuses_a_moment_when_a_later_timeline_was_live():
    swapped = Epoch(
        seg(6, 2), seg(8, 2), wal_snapshot("tl2", seg(6, 2), seg(8, 2), T0 + 900), (), T0 + 600
    )
    found = [epoch(5, 9, T0 + 700), swapped]
    with pytest.raises(PitrError, match="went on on timeline 2.*backup run"):
        pitr.choose_epochs(found, base(5, T0 + 150), T0 + 650)
    chosen = pitr.choose_epochs(found, base(5, T0 + 150), T0 + 550)
    assert [e.wal_from for e in chosen] == [seg(5)], "a moment before the swap recovers on 1"


# ----------------------------------------------------------------------------- gathering the WAL


def gather(tmp_path: Path, shipped: list[dict[str, bytes]]) -> tuple[int, dict[str, bytes]]:
    """Lay out the WAL of epochs whose newest snapshots hold `shipped` (spool name -> content),
    oldest first; returns the count and the resulting directory."""
    files = {
        f"snap{i}": {f"/var/lib/napdms/wal/{SERVICE}/{name}": data for name, data in spool.items()}
        for i, spool in enumerate(shipped)
    }
    chosen = [
        Epoch(seg(i), seg(i), wal_snapshot(f"snap{i}", seg(i), seg(i), T0 + i), ())
        for i in range(len(shipped))
    ]
    scratch, wal = tmp_path / "scratch", tmp_path / "scratch" / "wal"
    wal.mkdir(parents=True)
    count = pitr._gather_wal(FakeRestic(files=files), chosen, scratch, wal)
    return count, {p.name: p.read_bytes() for p in wal.iterdir()}


def test_gathered_wal_is_flat_and_counts_every_file(tmp_path):
    count, laid = gather(
        tmp_path,
        [
            {seg(1): b"one", seg(2): b"two"},
            {seg(2): b"two", seg(3): b"three", "00000002.history": b"h"},
        ],
    )
    assert laid == {seg(1): b"one", seg(2): b"two", seg(3): b"three", "00000002.history": b"h"}, (
        "expected every epoch's files side by side in one directory"
    )
    assert count == 4, f"expected the count of files laid out, got {count}"
    assert [p.name for p in (tmp_path / "scratch").iterdir()] == ["wal"], (
        "expected each epoch's restore directory removed"
    )


def test_a_complete_segment_wins_over_a_partial_of_the_same_name(tmp_path):
    _, laid = gather(
        tmp_path,
        [{seg(4): b"four", seg(5) + ".partial": b"half of five"}, {seg(5): b"all of five"}],
    )
    assert laid == {seg(4): b"four", seg(5): b"all of five"}, (
        "expected the completed segment kept and its partial twin removed"
    )


def test_only_the_newest_partial_without_its_twin_becomes_a_segment(tmp_path):
    _, laid = gather(
        tmp_path,
        [
            {seg(5): b"five", seg(6) + ".partial": b"stray six"},
            {seg(7) + ".partial": b"being written: seven"},
        ],
    )
    assert laid == {seg(5): b"five", seg(7): b"being written: seven"}, (
        "expected the newest partial renamed to its segment and the older stray partial removed"
    )


# ----------------------------------------------------------------------------- retention


def archive() -> FakeRestic:
    """Three epochs (segments 1-4, 5-9, 10-12), two with superseded shipments, and markers."""
    return FakeRestic(
        [
            wal_snapshot("e1-old", seg(1), seg(3), T0 + 50),
            wal_snapshot("e1", seg(1), seg(4), T0 + 100),
            wal_snapshot("e2-old", seg(5), seg(6), T0 + 150),
            wal_snapshot("e2", seg(5), seg(9), T0 + 200),
            wal_snapshot("e3", seg(10), seg(12), T0 + 300),
            marker_snapshot("mark-early", T0 + 120),
            marker_snapshot("mark-late", T0 + 260),
        ]
    )


def test_retain_forgets_superseded_shipments_of_every_epoch():
    doomed = pitr.retain(archive(), HOST, SERVICE, [base(1, T0 + 10)], forget=False)
    assert set(doomed) == {"e1-old", "e2-old"}, (
        f"expected only the superseded shipments when the oldest base starts the archive: {doomed}"
    )


def test_retain_forgets_epochs_wholly_before_the_oldest_kept_bases_start():
    doomed = pitr.retain(
        archive(), HOST, SERVICE, [base(10, T0 + 290), base(7, T0 + 180)], forget=False
    )
    assert "e1" in doomed, "expected the epoch ending before the oldest base's start forgotten"
    assert not {"e2", "e3"} & set(doomed), "expected the epoch holding the start and later kept"


def test_retain_forgets_markers_older_than_the_oldest_kept_bases_end():
    doomed = pitr.retain(archive(), HOST, SERVICE, [base(7, T0 + 180)], forget=False)
    assert "mark-early" in doomed and "mark-late" not in doomed, (
        f"expected only the marker set before the base ended (T0+180) forgotten: {doomed}"
    )


def test_retain_with_no_base_kept_forgets_nothing():
    restic = archive()
    assert pitr.retain(restic, HOST, SERVICE, []) == [], "expected nothing judged without a base"
    assert restic.forgotten == [], "expected no forget without a kept base"


def test_retain_forgets_what_it_returns():
    restic = archive()
    doomed = pitr.retain(restic, HOST, SERVICE, [base(7, T0 + 180)])
    assert restic.forgotten == [tuple(doomed)], "expected one forget of exactly the returned ids"


def test_retain_without_forget_only_returns_the_ids():
    restic = archive()
    doomed = pitr.retain(restic, HOST, SERVICE, [base(7, T0 + 180)], forget=False)
    assert doomed and restic.forgotten == [], "expected ids returned and restic forget not called"


# ----------------------------------------------------------------------------- run.prune


def wal_plan(tmp_path: Path, *sources: PostgresqlSource) -> BackupPlan:
    return BackupPlan(
        stack="dev",
        host_tag=HOST,
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "pw")),
        sources=list(sources)
        or [
            PostgresqlSource(
                service=SERVICE, host="db", wal=WalArchive(spool_dir=str(tmp_path / "spool"))
            )
        ],
        state_dir=str(tmp_path / "state"),
    )


def part_snapshot(snapshot_id: str, run_id: str, part: str) -> Snapshot:
    tags = ("napdms", "stack=dev", f"run={run_id}", f"service={SERVICE}", f"part={part}")
    return Snapshot(snapshot_id, restic_time(T0), (f"/{SERVICE}/x",), tags, HOST)


def two_runs(r2_reuses_r1: bool = False) -> FakeRestic:
    """Run r1 (not kept by the policy) and r2 (kept), each with a base and a dump (or r2 keeping
    r1's, as for an unchanged server), plus the WAL archive and markers."""
    listed, dumps = [], {}
    record = None
    for run_id, started, start in (("r1", T0, 1), ("r2", T0 + 170, 7)):
        ids = {kind: f"{run_id}-{kind}" for kind in ("base", "globals", "db", "manifest")}
        if record is None or not r2_reuses_r1:
            record = pg_record(
                base(start, started + 10, part=ids["base"]),
                parts=[
                    Part(snapshot=ids[k], path=f"/{SERVICE}/{k}", files=1, bytes=1, bytes_added=1)
                    for k in ("globals", "db", "base")
                ],
            )
            listed += [part_snapshot(ids[k], run_id, k) for k in ("base", "globals", "db")]
        manifest = run_with(run_id, started, record)
        dumps[ids["manifest"]] = manifest.model_dump_json().encode()
        listed.append(
            Snapshot(
                ids["manifest"],
                restic_time(started + 60),
                (MANIFEST_PATH,),
                ("napdms", "stack=dev", f"run={run_id}", MANIFEST_TAG),
                HOST,
            )
        )
    return FakeRestic(listed + archive().listed, dumps=dumps, keep=["r2-manifest"])


def test_prune_leaves_wal_and_markers_to_retain(tmp_path, monkeypatch):
    restic = two_runs()
    asked = []

    def retain(restic_, host, service, kept, forget=True):
        asked.append((host, service, {b.start_wal for b in kept}, forget))
        return ["e1-old"]

    monkeypatch.setattr(pitr, "retain", retain)
    run.prune(wal_plan(tmp_path), restic)
    assert asked == [(HOST, SERVICE, {seg(7)}, False)], (
        "expected retain asked once, with the kept run's base, and not to forget by itself"
    )
    assert sorted(restic.pruned) == sorted(
        ["r1-base", "r1-globals", "r1-db", "r1-manifest", "e1-old"]
    ), "expected the unkept run and exactly what retain returned forgotten, no other WAL or marker"


def test_prune_forgets_the_wal_and_markers_no_kept_base_needs(tmp_path):
    restic = two_runs()
    run.prune(wal_plan(tmp_path), restic)
    forgotten = set(restic.pruned)
    assert {"e1-old", "e1", "e2-old", "mark-early"} <= forgotten, (
        f"expected the WAL before the kept base and superseded shipments forgotten: {forgotten}"
    )
    assert not {"e2", "e3", "mark-late", "r2-base"} & forgotten, (
        "expected the kept base, the WAL from its start and later markers kept"
    )
    assert restic.forgotten == [], "expected one forget --prune, not a separate forget by retain"


def test_prune_keeps_an_older_base_a_kept_run_reused_and_the_wal_from_its_start(tmp_path):
    restic = two_runs(r2_reuses_r1=True)
    run.prune(wal_plan(tmp_path), restic)
    forgotten = set(restic.pruned)
    assert not {"r1-base", "r1-globals", "r1-db", "e1", "e2", "e3"} & forgotten, (
        f"expected r1's parts (reused by the kept r2) and the WAL from segment 1 kept: {forgotten}"
    )
    assert "r1-manifest" in forgotten, "expected the unkept run's manifest forgotten"


def test_prune_of_a_plan_without_wal_keeps_every_archive_snapshot(tmp_path):
    restic = two_runs()
    plain = PostgresqlSource(service=SERVICE, host="db")
    run.prune(wal_plan(tmp_path, plain), restic)
    assert not {s.id for s in archive().listed} & set(restic.pruned), (
        "expected no WAL or marker snapshot forgotten when the plan archives no WAL"
    )


# ----------------------------------------------------------------------------- records, manifests


def parts(*ids: str) -> list[Part]:
    return [Part(snapshot=i, path=f"/{SERVICE}/{i}", files=1, bytes=1, bytes_added=1) for i in ids]


def test_logical_parts_leave_out_the_base_backup():
    record = pg_record(base(3, T0, part="b"), parts=parts("g", "b", "d"))
    assert [p.snapshot for p in record.logical_parts] == ["g", "d"], (
        "expected every part but the base backup's"
    )


def test_logical_parts_without_a_base_are_all_parts():
    record = pg_record(None, parts=parts("g", "d"))
    assert [p.snapshot for p in record.logical_parts] == ["g", "d"], "expected every part"


def test_a_restore_extracts_only_the_logical_parts(tmp_path):
    restic = FakeRestic()
    record = pg_record(base(3, T0, part="b"), parts=parts("g", "b", "d"))
    context = HookContext(restic=restic, host_tag=HOST, tags=["napdms"], verify_restore=True)
    hooks.restore(PostgresqlSource(service=SERVICE, host="db"), record, context, str(tmp_path))
    assert restic.restored == [("g", str(tmp_path), True), ("d", str(tmp_path), True)], (
        "expected the dumps restored (verified as asked) and the base backup left alone"
    )


def test_a_manifest_with_the_point_in_time_fields_reads_back():
    record = pg_record(base(3, T0 + 10, part="b"), parts=parts("g", "b")).model_copy(
        update={
            "dumped": T0 - 86400,
            "changes": "1234@app:,postgres:",
            "tables": {"app": {"public.t": TableSum(rows=2, checksum="99")}},
        }
    )
    written = run_with("r1", T0, record)
    back = RunManifest.read(written.model_dump_json(indent=2))
    assert back == written, "expected base, dumped and changes to survive a write and a read"
    assert back.services[SERVICE].base == base(3, T0 + 10, part="b")


def test_a_manifest_from_before_point_in_time_recovery_still_reads():
    old = {
        "run_id": "r0",
        "stack": "dev",
        "host_tag": HOST,
        "started": T0,
        "finished": T0 + 60,
        "attempts": 1,
        "services": {
            SERVICE: {
                "service": SERVICE,
                "hook": "postgresql",
                "status": "ok",
                "parts": [
                    {"snapshot": "g", "path": "/p/g", "files": 1, "bytes": 1, "bytes_added": 1}
                ],
                "tables": {},
                "checksum_method": "sum-hashtextextended-0",
                "seconds": 1.5,
            }
        },
    }
    record = RunManifest.read(json.dumps(old)).services[SERVICE]
    assert (record.base, record.dumped, record.changes) == (None, None, None), (
        "expected the new fields absent from an old manifest to read as None"
    )
    assert [p.snapshot for p in record.logical_parts] == ["g"], "expected its parts all logical"


def test_previous_records_are_each_services_newest_successful_record(tmp_path):
    restic = two_runs()
    failed = run_with("r3", T0 + 400, pg_record(None, status="failed"), snapshot="r3-manifest")
    restic.dumps["r3-manifest"] = failed.model_dump_json().encode()
    restic.listed.append(
        Snapshot("r3-manifest", restic_time(T0 + 460), (MANIFEST_PATH,), (MANIFEST_TAG,), HOST)
    )
    found = run.previous_records(wal_plan(tmp_path), restic)
    assert list(found) == [SERVICE] and found[SERVICE].base.part == "r2-base", (
        "expected r2's record: the newest in which the service succeeded"
    )


def test_previous_records_without_a_readable_repository_are_none(tmp_path):
    class Unreachable(FakeRestic):
        def snapshots(self, host=None, tags=()):
            raise ResticError("network", "repo", "snapshots", "connection lost")

    assert run.previous_records(wal_plan(tmp_path), Unreachable()) == {}, (
        "expected no previous records (the run itself reports the repository)"
    )


# ----------------------------------------------------------------------------- restore --to


def test_restore_to_refuses_a_service_without_an_archived_wal(tmp_path):
    archived = PostgresqlSource(
        service="pg-main", host="db", wal=WalArchive(spool_dir=str(tmp_path / "spool"))
    )
    plain = PostgresqlSource(service="pg-plain", host="db2")
    plan = wal_plan(tmp_path, archived, plain)
    with pytest.raises(RestoreError, match="give --service pg-main$"):
        restore_to(plan, "2026-01-01T00:00", str(tmp_path / "into"), ["pg-plain"])


def test_restore_to_in_a_plan_without_wal_says_there_is_none(tmp_path):
    plan = wal_plan(tmp_path, PostgresqlSource(service="pg-plain", host="db"))
    with pytest.raises(RestoreError, match=r"\(none in the plan of stack dev\)"):
        restore_to(plan, "2026-01-01T00:00", str(tmp_path / "into"), ["pg-plain"])


def test_restore_to_refuses_two_services(tmp_path):
    plan = wal_plan(
        tmp_path,
        *(
            PostgresqlSource(service=name, host=name, wal=WalArchive(spool_dir=f"/spool/{name}"))
            for name in ("pg-a", "pg-b")
        ),
    )
    with pytest.raises(RestoreError, match="recovers one PostgreSQL service.*pg-a or pg-b"):
        restore_to(plan, "2026-01-01T00:00", str(tmp_path / "into"), ["pg-a", "pg-b"])


def test_restore_to_refuses_a_moment_in_the_future(tmp_path):
    future = dt.datetime.fromtimestamp(time.time() + 3600, dt.UTC).isoformat()
    with pytest.raises(RestoreError, match="in the future; give a moment that has passed"):
        restore_to(wal_plan(tmp_path), future, str(tmp_path / "into"), [SERVICE])


def test_a_timeline_switch_told_by_a_shipment_refuses_later_moments_from_an_older_base():
    told = wal_snapshot("told", seg(5), seg(9, 2), T0 + 900)
    told = dataclasses.replace(told, tags=(*told.tags, f"timeline-00000002={int(T0 + 600)}"))
    found = pitr.epochs(FakeRestic([told]), HOST, SERVICE)
    with pytest.raises(PitrError, match="went on on timeline 2"):
        pitr.choose_epochs(found, base(5, T0 + 150), T0 + 650)
