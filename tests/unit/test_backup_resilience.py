"""The agent over months: manifests of a newer agent or garbage in the repository, a run that
raises, and a long run that still has to look healthy (and a hung one that must not)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from components.model.plan import (
    AgentHealth,
    BackupPlan,
    FilesSource,
    PlanError,
    Repository,
    Schedule,
    load_plan,
)
from napdms_ops.backup import agent
from napdms_ops.backup.manifest import MANIFEST_PATH, MANIFEST_TAG, RunManifest, listing
from napdms_ops.backup.metrics import METRICS_FILE, read_state
from napdms_ops.backup.restic import Snapshot
from napdms_ops.backup.run import repository, run_backup
from tests.backup_files import needs_restic


@pytest.fixture
def plan(tmp_path) -> BackupPlan:
    """One file service with data, a password file and a local repository."""
    data = tmp_path / "source" / "gitea" / "data"
    data.mkdir(parents=True)
    (data / "repo.git").write_bytes(os.urandom(20_000))
    (tmp_path / "password").write_text("correct horse battery staple\n")
    return BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "password")),
        sources=[FilesSource(service="gitea", paths=[str(data)])],
        schedule=Schedule(retries=0, retry_delay_s=0),
        state_dir=str(tmp_path / "state"),
        cache_dir=str(tmp_path / "cache"),
    )


def _newer_manifest(run_id: str) -> bytes:
    """A manifest as a newer agent writes it: a field more at every level."""
    return json.dumps(
        {
            "run_id": run_id,
            "stack": "dev",
            "host_tag": "napdms-dev",
            "started": 1_900_000_000.0,
            "finished": 1_900_000_060.0,
            "attempts": 1,
            "agent_version": "2.0",
            "services": {
                "gitea": {
                    "service": "gitea",
                    "hook": "files",
                    "status": "ok",
                    "wal_segment": "000000010000000000000003",
                    "parts": [],
                    "tables": {
                        "napdms": {"documents": {"rows": 1, "checksum": "ab", "lsn": "0/3"}}
                    },
                }
            },
        }
    ).encode()


def _store(plan: BackupPlan, run_id: str, content: bytes) -> str:
    """Put `content` into the repository as the manifest of run `run_id`."""
    return (
        repository(plan)
        .backup_bytes(
            content,
            MANIFEST_PATH,
            plan.host_tag,
            ["napdms", f"stack={plan.stack}", f"run={run_id}", MANIFEST_TAG],
        )
        .snapshot_id
    )


def _list(plan: BackupPlan) -> dict:
    result, code = agent.dispatch(plan, argparse.Namespace(command="list"))
    assert code == 0
    return result


class _Dumps:
    """A repository whose manifests' files are given (no restic needed)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files

    def dump(self, snapshot_id: str, path: str) -> bytes:
        return self.files[snapshot_id]


def _snapshot(snapshot_id: str) -> Snapshot:
    return Snapshot(
        id=snapshot_id,
        time="2026-12-01T02:00:00Z",
        paths=(MANIFEST_PATH,),
        tags=("napdms", f"run=r-{snapshot_id}", MANIFEST_TAG),
        hostname="napdms-dev",
    )


def test_reading_ignores_unknown_fields_and_skips_what_is_no_manifest(plan, caplog):
    files = {
        "aaaa1111": _newer_manifest("newer"),
        "bbbb2222": b"{not json",
        "cccc3333": json.dumps({"run_id": "x", "started": "yesterday"}).encode(),
        "dddd4444": b"\xff\xfe",
    }
    with caplog.at_level(logging.WARNING):
        found = listing(plan, _Dumps(files), [_snapshot(s) for s in files])
    assert [run.run_id for run in found.runs] == ["newer"]
    assert found.runs[0].services["gitea"].tables["napdms"]["documents"].rows == 1
    assert [(u.snapshot, u.run_id) for u in found.unreadable] == [
        ("bbbb2222", "r-bbbb2222"),
        ("cccc3333", "r-cccc3333"),
        ("dddd4444", "r-dddd4444"),
    ]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 3 and all(MANIFEST_PATH in line for line in warned), warned
    assert "bbbb2222" in warned[0] and "unreadable" in warned[0]


def test_what_the_agent_writes_stays_strict():
    with pytest.raises(ValueError, match="agent_version"):
        RunManifest.model_validate_json(_newer_manifest("r"))
    with pytest.raises(ValueError, match="extra"):
        RunManifest(
            run_id="r",
            stack="dev",
            host_tag="h",
            started=0,
            finished=0,
            attempts=1,
            services={},
            typo=1,
        )


@needs_restic
def test_a_manifest_with_a_field_more_is_listed_and_runs_go_on(plan):
    first = run_backup(plan)
    _store(plan, "20261201T010000Z-newer", _newer_manifest("20261201T010000Z-newer"))
    listed = _list(plan)
    assert {run["run_id"] for run in listed["runs"]} == {
        first.state.run_id,
        "20261201T010000Z-newer",
    }, listed
    second = run_backup(plan)
    assert second.state.success and second.state.check_success, second.state.error
    assert second.state.manifests_unreadable == 0


@needs_restic
def test_a_garbage_manifest_is_logged_counted_skipped_and_kept(plan, caplog):
    run_backup(plan)
    garbage = _store(plan, "20261201T010000Z-garbage", b"{this is no manifest")
    with caplog.at_level(logging.WARNING):
        outcome = run_backup(plan)
    assert outcome.state.success and outcome.state.check_success, outcome.state.error
    assert read_state(plan.state_dir).manifests_unreadable == 1
    metrics = (Path(plan.state_dir) / METRICS_FILE).read_text()
    assert 'napdms_backup_manifest_unreadable{stack="dev"} 1' in metrics, metrics
    assert 'napdms_backup_last_run_success{stack="dev"} 1' in metrics
    assert any(
        garbage[:8] in r.getMessage() and MANIFEST_PATH in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    listed = _list(plan)
    assert listed["runs"][-1]["run_id"] == outcome.state.run_id, listed
    assert [u["snapshot"][:8] for u in listed["unreadable"]] == [garbage[:8]], listed
    assert any(s.is_(garbage) for s in repository(plan).snapshots()), (
        "retention forgot a manifest it could not read"
    )


def _fake_clock():
    now = [dt.datetime(2026, 11, 23, 0, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()]

    def sleep(seconds):
        now[0] += seconds

    return (lambda: now[0]), sleep


def test_a_run_that_raises_leaves_the_loop_running_and_the_next_run_happens(plan, monkeypatch):
    calls = []

    def run(plan):
        calls.append(len(calls))
        if len(calls) == 1:
            raise ValueError("1 validation error for RunManifest")

    monkeypatch.setattr(agent, "run_backup", run)
    clock, sleep = _fake_clock()
    agent.loop(plan, clock=clock, sleep=sleep, runs=2)
    assert calls == [0, 1], "the loop did not survive the first run"


def test_a_run_that_raises_is_recorded_as_failed(plan, monkeypatch):
    monkeypatch.setattr(agent, "run_backup", lambda plan: 1 / 0)
    clock, sleep = _fake_clock()
    agent.loop(plan, clock=clock, sleep=sleep, runs=1)
    state = read_state(plan.state_dir)
    assert (state.success, state.reason) == (False, "internal")
    assert "ZeroDivisionError" in state.error
    metrics = (Path(plan.state_dir) / METRICS_FILE).read_text()
    assert 'napdms_backup_failure{stack="dev",reason="internal"} 1' in metrics


@pytest.mark.parametrize("signal_exception", [KeyboardInterrupt, SystemExit])
def test_a_signal_still_ends_the_loop(plan, monkeypatch, signal_exception):
    def run(plan):
        raise signal_exception()

    monkeypatch.setattr(agent, "run_backup", run)
    clock, sleep = _fake_clock()
    with pytest.raises(signal_exception):
        agent.loop(plan, clock=clock, sleep=sleep, runs=2)
    assert not (Path(plan.state_dir) / agent.PROGRESS_FILE).exists()


WRITER = "import sys,time\nfor _ in range(16):\n    sys.stdout.write('x' * 4096); sys.stdout.flush()\n    time.sleep(0.1)\n"  # noqa: E501
"""A run's process that makes progress for about 1.6 s."""


def test_health_is_good_while_a_long_run_moves_and_bad_once_it_hangs(plan, monkeypatch):
    plan = plan.model_copy(update={"health": AgentHealth(beat_s=0.05, stall_s=0.8, max_run_s=60)})
    hang = threading.Event()
    phase = []

    def slow_run(plan):
        subprocess.run([sys.executable, "-c", WRITER], stdout=subprocess.DEVNULL, check=True)
        phase.append("hanging")
        stuck = subprocess.Popen(["sleep", "60"])  # waits on nothing, reads and writes nothing
        hang.wait(30)
        stuck.kill()
        stuck.wait()

    monkeypatch.setattr(agent, "run_backup", slow_run)
    runner = threading.Thread(target=agent.run_once, args=(plan,))
    runner.start()
    try:
        time.sleep(1.3)  # longer than stall_s since the run began, but it moves
        assert not phase, "the fake run was too fast for this machine"
        ok, reason = agent.health(plan)
        assert ok and "run is going on" in reason, reason
        deadline = time.monotonic() + 10
        while agent.healthy(plan) and time.monotonic() < deadline:
            time.sleep(0.05)
        ok, reason = agent.health(plan)
        assert phase and not ok and "no progress" in reason, reason
    finally:
        hang.set()
        runner.join()
    assert agent.health(plan) == (True, "waiting for the next run")


def test_health_fails_when_a_run_outlasts_its_maximum(plan):
    plan = plan.model_copy(update={"health": AgentHealth(beat_s=30, stall_s=7200, max_run_s=3600)})
    heartbeat = Path(plan.state_dir) / agent.HEARTBEAT_FILE
    with agent.RunWatch(plan, clock=lambda: 1_000.0):
        heartbeat.write_text(str(1_000.0 + 3599))  # the process lives, and its run moved ...
        assert agent.healthy(plan, now=1_000.0 + 3599)
        heartbeat.write_text(str(1_000.0 + 3601))
        ok, reason = agent.health(plan, now=1_000.0 + 3601)  # ... but it takes too long
    assert not ok and "max_run_s" in reason, reason


def test_a_stall_bound_shorter_than_the_retry_delay_is_refused(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps(
            {
                "stack": "dev",
                "host_tag": "h",
                "repository": {"url": "/r", "password_file": "/p"},
                "sources": [{"hook": "files", "service": "s", "paths": ["/x"]}],
                "schedule": {"retry_delay_s": 600},
                "health": {"stall_s": 300},
            }
        )
    )
    with pytest.raises(PlanError, match="health.stall_s .300. must exceed"):
        load_plan(path)


def test_a_trickle_is_no_progress_but_bytes_or_a_new_process_are():
    # A blocked restic still reads ~150 bytes a second (its runtime polls the system).
    assert not agent.moved({7: 1000}, {7: 1300}, 2.0)
    assert agent.moved({7: 1000}, {7: 1000 + 64 * 1024}, 2.0)
    assert agent.moved({7: 1000}, {7: 1000, 8: 0}, 2.0)
    assert agent.moved({7: 1000}, {}, 2.0)
