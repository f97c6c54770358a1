"""The backup orchestrator against a real restic and a local repository: keys, locks, runs,
retries, per-service failure, selection of runs, metrics and the schedule."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from components.model.plan import BackupPlan, FilesSource, PostgresqlSource, Repository, Schedule
from napdms_ops.backup import agent
from napdms_ops.backup.manifest import RunManifest, ServiceRecord, manifests
from napdms_ops.backup.metrics import read_state, render
from napdms_ops.backup.restic import ResticError, classify
from napdms_ops.backup.restore import RestoreError, restore, select
from napdms_ops.backup.run import RunLock, RunLocked, repository, run_backup
from tests.backup_files import needs_restic, tree

pytestmark = needs_restic


@pytest.fixture
def site(tmp_path):
    """Two file services with data, a password file and a plan with a local repository."""
    for service, files in {
        "gitea": {"repo/a.git": os.urandom(70_000), "conf": b"x" * 100},
        "n8n": {"db.sqlite": os.urandom(5000)},
    }.items():
        for name, data in files.items():
            path = tmp_path / "source" / service / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    (tmp_path / "password").write_text("correct horse battery staple\n")
    plan = BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "password")),
        sources=[
            FilesSource(service="gitea", paths=[str(tmp_path / "source/gitea/data")]),
            FilesSource(service="n8n", paths=[str(tmp_path / "source/n8n/data")]),
        ],
        schedule=Schedule(retries=2, retry_delay_s=0),
        state_dir=str(tmp_path / "state"),
        cache_dir=str(tmp_path / "cache"),
    )
    return tmp_path, plan


def test_a_run_backs_up_every_service_and_records_a_manifest(site):
    _, plan = site
    outcome = run_backup(plan)
    assert outcome.state.success and outcome.manifest.snapshot, f"run failed: {outcome.state.error}"
    assert set(outcome.manifest.services) == {"gitea", "n8n"}


def test_restore_gives_back_byte_identical_files(site):
    root, plan = site
    run_backup(plan)
    restore(plan, "latest", str(root / "restored"))
    assert tree(root / "restored" / str(root / "source").lstrip("/")) == tree(root / "source")


def test_restore_refuses_a_directory_holding_data_without_force(site):
    root, plan = site
    run_backup(plan)
    (root / "busy").mkdir()
    (root / "busy" / "live.txt").write_text("live data")
    with pytest.raises(RestoreError, match="--force"):
        restore(plan, "latest", str(root / "busy"))
    assert (root / "busy" / "live.txt").read_text() == "live data"


def test_restore_with_force_first_takes_a_safety_snapshot_of_what_is_there(site):
    root, plan = site
    run_backup(plan)
    (root / "busy").mkdir()
    (root / "busy" / "live.txt").write_text("live data")
    report = restore(plan, "latest", str(root / "busy"), force=True)
    safety = [
        s
        for s in repository(plan).snapshots(tags=["safety"])
        if s.id.startswith(report.safety_snapshot)
    ]
    assert safety and safety[0].paths == (str(root / "busy"),), (
        "no safety snapshot of the overwritten directory"
    )


def test_missing_password_file_stops_the_run_before_anything_is_written(site):
    root, plan = site
    os.remove(plan.repository.password_file)
    outcome = run_backup(plan)
    assert (outcome.state.success, outcome.state.reason) == (False, "missing-password")
    assert not (root / "repo").exists(), "a repository was created without a key"


def test_wrong_password_fails_with_its_reason_and_writes_nothing(site):
    root, plan = site
    run_backup(plan)
    before = sorted(str(p) for p in (root / "repo").rglob("*"))
    Path(plan.repository.password_file).write_text("not the key\n")
    outcome = run_backup(plan)
    assert (outcome.state.success, outcome.state.reason, outcome.state.attempts) == (
        False,
        "wrong-password",
        1,
    )
    assert sorted(str(p) for p in (root / "repo").rglob("*")) == before, "the repository changed"


def test_a_failing_dump_marks_only_that_service_failed(site):
    root, plan = site
    broken = PostgresqlSource(
        service="postgres", host="127.0.0.1", port=1, password_file=plan.repository.password_file
    )
    plan = plan.model_copy(update={"sources": [*plan.sources, broken]})
    outcome = run_backup(plan)
    services = {name: record.status for name, record in outcome.manifest.services.items()}
    assert services == {"gitea": "ok", "n8n": "ok", "postgres": "failed"}
    assert (outcome.state.success, outcome.state.reason) == (False, "service-failed")


def test_a_failed_service_is_retried_and_the_others_are_not_backed_up_twice(site):
    root, plan = site
    broken = PostgresqlSource(service="postgres", host="127.0.0.1", port=1)
    plan = plan.model_copy(update={"sources": [*plan.sources, broken]})
    outcome = run_backup(plan)
    gitea = [s for s in repository(plan).snapshots(tags=["service=gitea"])]
    assert outcome.state.attempts == 3 and len(gitea) == 1, (
        f"{outcome.state.attempts} attempts, {len(gitea)} gitea snapshots"
    )


def test_latest_skips_runs_in_which_the_service_failed(site):
    root, plan = site
    first = run_backup(plan).manifest
    broken = plan.model_copy(
        update={
            "sources": [FilesSource(service="gitea", paths=[str(root / "gone")]), plan.sources[1]]
        }
    )
    run_backup(broken)
    assert (
        select(manifests(plan, repository(plan)), "latest", ["gitea"], "UTC").run_id == first.run_id
    )


def test_a_time_selects_the_last_run_started_before_it():
    runs = [
        RunManifest(
            run_id=f"r{i}",
            stack="dev",
            host_tag="h",
            started=1_000_000 + i * 86400,
            finished=0,
            attempts=1,
            services={"gitea": ServiceRecord(service="gitea", hook="files", status="ok")},
        )
        for i in range(3)
    ]
    moment = dt.datetime.fromtimestamp(1_000_000 + 86400 + 60, dt.UTC).isoformat()
    assert select(runs, moment, [], "UTC").run_id == "r1"


def test_an_unreadable_selector_names_the_accepted_forms():
    runs = [
        RunManifest(
            run_id="r0", stack="dev", host_tag="h", started=0, finished=0, attempts=1, services={}
        )
    ]
    with pytest.raises(RestoreError, match="latest.*time"):
        select(runs, "yesterday-ish", [], "UTC")


def test_a_second_run_is_refused_while_one_holds_the_lock(site):
    _, plan = site
    with RunLock(plan.state_dir):
        with pytest.raises(RunLocked, match="already in progress"):
            run_backup(plan)


def test_the_lock_is_free_again_after_a_run(site):
    _, plan = site
    run_backup(plan)
    with RunLock(plan.state_dir):
        pass


def test_metrics_carry_the_last_success_over_a_failed_run(site):
    _, plan = site
    good = run_backup(plan).state
    os.remove(plan.repository.password_file)
    run_backup(plan)
    state = read_state(plan.state_dir)
    text = render(state)
    assert state.last_success == good.last_success
    assert 'napdms_backup_last_run_success{stack="dev"} 0' in text
    assert 'napdms_backup_failure{stack="dev",reason="missing-password"} 1' in text


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("Fatal: wrong password or no key found", "wrong-password"),
        (
            "Fatal: unable to open config file: stat /r/config: no such file or directory\n"
            "Is there a repository at the following location?",
            "no-repository",
        ),
        (
            "Fatal: unable to save snapshot: write /r/data/33/x-tmp: no space left on device",
            "disk-full",
        ),
        ("Load(<lock/1>, 0, 0) returned error: connection lost", "network"),
        (
            "unable to create lock in backend: repository is already locked exclusively by PID 1",
            "locked",
        ),
        ("something else entirely", "failed"),
    ],
)
def test_restic_failures_are_classified(stderr, kind):
    assert classify(stderr) == kind


def test_a_wrong_key_is_not_retried():
    assert not ResticError("wrong-password", "r", "open", "x").retryable


def test_the_next_run_is_at_the_configured_local_time():
    plan = BackupPlan.model_validate(
        {
            "stack": "dev",
            "host_tag": "h",
            "repository": {"url": "/r", "password_file": "/p"},
            "sources": [{"hook": "files", "service": "s", "paths": ["/x"]}],
            "schedule": {"time_of_day": "02:00", "timezone": "Europe/Berlin"},
        }
    )
    berlin = ZoneInfo("Europe/Berlin")
    now = dt.datetime(
        2026, 3, 28, 12, 0, tzinfo=berlin
    ).timestamp()  # the night the clocks go forward
    due = dt.datetime.fromtimestamp(agent.next_run(plan, now), berlin)
    assert (due.day, due.hour, due.minute) in ((29, 3, 0), (29, 2, 0)), due
    assert (
        agent.next_run(plan, dt.datetime(2026, 11, 23, 1, 59, tzinfo=berlin).timestamp())
        == dt.datetime(2026, 11, 23, 2, 0, tzinfo=berlin).timestamp()
    )


def test_the_agent_is_unhealthy_without_a_recent_heartbeat(site):
    _, plan = site
    assert not agent.healthy(plan)
    Path(plan.state_dir).mkdir(parents=True, exist_ok=True)
    (Path(plan.state_dir) / agent.HEARTBEAT_FILE).write_text("0")
    assert not agent.healthy(plan)
    (Path(plan.state_dir) / agent.HEARTBEAT_FILE).write_text(str(dt.datetime.now().timestamp()))
    assert agent.healthy(plan)


def test_the_loop_sleeps_until_the_scheduled_time_then_runs(site, monkeypatch):
    _, plan = site
    berlin = ZoneInfo("Europe/Berlin")
    now = [dt.datetime(2026, 11, 23, 0, 30, tzinfo=berlin).timestamp()]
    started_at = []
    monkeypatch.setattr(agent, "run_backup", lambda plan: started_at.append(now[0]))

    def sleep(seconds):
        now[0] += seconds

    agent.loop(plan, clock=lambda: now[0], sleep=sleep, runs=1)
    assert started_at == [dt.datetime(2026, 11, 23, 2, 0, tzinfo=berlin).timestamp()]
