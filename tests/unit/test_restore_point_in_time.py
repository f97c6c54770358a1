"""`restore --force` puts back a point in time (against a real restic and a local repository), and
the one-shot restore/drill job is built from the agent's networks and mounts (fake Docker)."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import pytest

from components.model.plan import BackupPlan, FilesSource, Repository, Schedule
from napdms_ops import backups
from napdms_ops.backup.restore import restore
from napdms_ops.backup.run import repository, run_backup
from tests.backup_files import needs_restic, tree


@pytest.fixture
def site(tmp_path):
    """One files service backed up once, and `live`: a directory whose copy of the service's
    path holds that data plus what was written after the snapshot (the job's layout, where the
    volume is mounted at `<into><path>`)."""
    data = tmp_path / "source" / "gitea" / "data"
    (data / "repo").mkdir(parents=True)
    (data / "repo" / "a.git").write_bytes(os.urandom(70_000))
    (data / "conf").write_bytes(b"x" * 100)
    (tmp_path / "password").write_text("correct horse battery staple\n")
    plan = BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(url=str(tmp_path / "repo"), password_file=str(tmp_path / "password")),
        sources=[FilesSource(service="gitea", paths=[str(data)])],
        schedule=Schedule(retries=1, retry_delay_s=0),
        state_dir=str(tmp_path / "state"),
        cache_dir=str(tmp_path / "cache"),
    )
    assert run_backup(plan).state.success
    backed_up = tree(data)
    into = tmp_path / "live"
    volume = into / str(data).lstrip("/")
    shutil.copytree(data, volume)
    (volume / "late.txt").write_text("written after the snapshot")
    (volume / "repo" / "new.git").write_text("also later")
    (volume / "conf").write_text("changed later")
    return tmp_path, plan, into, volume, backed_up


@needs_restic
def test_a_forced_restore_leaves_exactly_the_snapshot(site):
    _, plan, into, volume, backed_up = site
    report = restore(plan, "latest", str(into), force=True)
    assert report.safety_snapshot
    assert tree(volume) == backed_up, "files written after the snapshot survived"
    assert not [p for p in volume.iterdir() if p.name.startswith(".napdms-restore-")]


@needs_restic
def test_the_safety_snapshot_restores_with_the_same_command(site):
    tmp_path, plan, into, volume, backed_up = site
    before = tree(volume)
    safety = restore(plan, "latest", str(into), force=True).safety_snapshot
    assert tree(volume) == backed_up
    fresh = tmp_path / "fresh"
    back = restore(plan, safety[:8], str(fresh))
    assert back.run_id.startswith(safety) and back.services == ("gitea",)
    assert back.safety_snapshot is None
    assert tree(fresh / plan.sources[0].paths[0].lstrip("/")) == before
    # ... and over the live directory too, again exactly that moment.
    restore(plan, safety, str(into), force=True)
    assert tree(volume) == before
    assert len(repository(plan).snapshots(tags=["safety"])) == 2


# ------------------------------------------------------------------ the job (fake Docker)


class _Networks:
    def __init__(self):
        self.connected = []

    def get(self, name):
        return SimpleNamespace(connect=lambda job: self.connected.append((name, job)))


def _agent(mounts, networks):
    created = {}
    client = SimpleNamespace(
        networks=_Networks(),
        containers=SimpleNamespace(create=lambda image, **kw: created.update(kw) or "job"),
    )
    container = SimpleNamespace(
        id="agent",
        image=SimpleNamespace(id="sha256:agent"),
        attrs={
            "Mounts": mounts,
            "NetworkSettings": {"Networks": {name: {} for name in networks}},
            "HostConfig": {"Memory": 256 * 2**20, "NanoCpus": 500_000_000},
        },
    )
    return backups.Agent("dev", client, container), created


def _volume(name, destination, rw):
    return {"Type": "volume", "Name": name, "Destination": destination, "RW": rw}


def test_the_job_joins_every_network_of_the_agent_hardened():
    networks = ["napdms-dev-chat", "napdms-dev-data", "napdms-dev-edge", "napdms-dev-monitoring"]
    agent, created = _agent([], networks)
    assert backups._create_job(agent, ["restore", "--snapshot", "latest"], []) == "job"
    joined = [created["network"], *(name for name, _ in agent.client.networks.connected)]
    assert sorted(joined) == networks
    assert created["cap_drop"] == ["ALL"] and created["read_only"] is True
    assert created["security_opt"] == ["no-new-privileges:true"]
    assert created["cgroupns"] == "private" and created["pids_limit"] > 0
    assert created["mem_limit"] and created["nano_cpus"]


def test_the_job_carries_the_agents_repository_mounts_but_not_its_sources_or_state():
    agent, _ = _agent(
        [
            _volume("napdms-dev-backup-agent-run-config", "/etc/napdms-backup", False),
            _volume("napdms-dev-backup-agent-run-secrets", "/run/secrets", False),
            _volume("napdms-dev-backup-agent-cache", "/cache", True),
            _volume("napdms-dev-backup-agent-repository", "/repository", True),
            _volume("napdms-dev-backup-agent-state", "/state", True),
            _volume("napdms-dev-gitea-data", "/source/gitea/data", False),
            {"Type": "bind", "Source": "/srv/keys", "Destination": "/keys", "RW": False},
        ],
        [],
    )
    assert sorted(backups._agent_mounts(agent)) == [
        "/srv/keys:/keys:ro",
        "napdms-dev-backup-agent-cache:/cache:rw",
        "napdms-dev-backup-agent-repository:/repository:rw",
        "napdms-dev-backup-agent-run-config:/etc/napdms-backup:ro",
        "napdms-dev-backup-agent-run-secrets:/run/secrets:ro",
    ]


def test_a_forced_restore_is_refused_while_a_service_mounts_the_volume():
    writer = SimpleNamespace(id="w", name="napdms-dev-gitea-1")
    agent, _ = _agent([], [])
    agent.client.containers.list = lambda filters: [writer, agent.container]
    with pytest.raises(backups.BackupCommandError) as raised:
        backups._refuse_mounted(agent, ["napdms-dev-gitea-data"])
    assert str(raised.value) == (
        "stack dev: volume napdms-dev-gitea-data is mounted by running container "
        "napdms-dev-gitea-1; stop it first (`docker stop napdms-dev-gitea-1`), "
        "then run the restore again"
    )
