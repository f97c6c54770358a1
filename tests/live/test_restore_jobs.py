"""Restore and drill jobs beside the backup agent exactly as the dev program declares it (replayed:
all four networks, of which only `edge` routes off the host, and every declared volume), once with
dev's repository volume and once with an SFTP repository on the ASUSTOR namespace; and `restore
--force` as a point in time: refused while a service mounts the volume, the snapshot's files and
nothing else afterwards, its safety snapshot restorable by id, and from another stack's backup
that safety snapshot in the target stack's own repository."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from napdms_ops import backups
from tests.live.engine import ensure_engine
from tests.live.replay import replay
from tests.live.test_backup_agent_container import _archive, _read_volume
from tests.program import OPERATOR_CONFIG, run_program, stack_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

STACK = "dev"
DOCUMENTS_VOLUME = "napdms-dev-napdms-backend-documents"
DOCUMENTS = {
    "letters/2026/offer.pdf": os.urandom(200_000),
    "letters/empty.txt": b"",
    "scan.tif": os.urandom(1_500_000),
}
SEED = """
import json, subprocess, sys
plan = json.load(open('/etc/napdms-backup/plan.json'))
plan['sources'] = [s for s in plan['sources'] if s['service'] == 'napdms-backend']
open('/tmp/seed-plan.json', 'w').write(json.dumps(plan))
for command in ('init', 'run'):
    done = subprocess.run([sys.executable, '-m', 'napdms_ops.backup', command, '--plan',
                           '/tmp/seed-plan.json'], capture_output=True, text=True)
    print(command, done.returncode, done.stdout[-500:], done.stderr[-1500:])
"""


def _put(client, image: str, volume: str, files: dict[str, bytes]) -> None:
    seeder = client.containers.create(image, ["true"], volumes=[f"{volume}:/seed/v"])
    try:
        seeder.put_archive("/seed", _archive("v", files, 0o640))
    finally:
        seeder.remove()


@pytest.fixture(scope="module", params=["repository-volume", "asustor-sftp"])
def declared(request, agent_image):
    """(found agent, client, image) for dev's agent replayed as declared, with one run of the
    documents in its repository."""
    client = ensure_engine()
    config = {**stack_config(STACK), **OPERATOR_CONFIG}
    box = link = None
    if request.param == "asustor-sftp":
        from tests.live.asustor import Asustor

        box = Asustor()
        # The program refuses a repository below /tmp, where the namespace keeps its data.
        link = Path(f"/srv/napdms-live-{secrets.token_hex(4)}")
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(box.data_dir)
        config["backup"] = {
            **config["backup"],
            "repository": f"sftp:{box.user}@{box.address}:{link}/repo",
            "sftp_known_hosts": box.known_hosts_file.read_text().strip(),
        }
        config["backup_ssh_key"] = box.key_file.read_text().strip()
    done = None
    try:
        done = replay(run_program(STACK, config, tuple(OPERATOR_CONFIG)), ["backup-agent"], client)
        agent = done.containers["local-backup-agent-1"]
        assert len(agent.attrs["NetworkSettings"]["Networks"]) == 4
        _put(client, agent_image, DOCUMENTS_VOLUME, DOCUMENTS)
        code, output = agent.exec_run(["python3", "-c", SEED])
        assert code == 0 and "run 0" in output.decode(), output.decode()
        yield backups.find_agent(STACK, client), client, agent_image
    finally:
        if done:
            done.remove()
        if link:
            link.unlink()
        if box:
            box.close()


def _cleanup(client, job: backups.JobResult) -> None:
    for name in job.volumes:
        if "-restore-" in name:
            client.volumes.get(name).remove(force=True)


def test_a_restore_job_reaches_the_repository_of_the_declared_agent(declared):
    found, client, image = declared
    job = backups.restore(found, "latest", ["napdms-backend"], label=f"j{os.getpid()}")
    try:
        assert job.exit_code == 0, job.error
        assert _read_volume(client, image, job.volumes[0]) == DOCUMENTS
    finally:
        _cleanup(client, job)


def test_a_drill_job_reaches_the_repository_of_the_declared_agent(declared):
    found, _, _ = declared
    job = backups.drill(found, "latest", None)
    assert job.exit_code == 0, job.error
    assert job.result["problems"] == [] and job.result["services"] == ["napdms-backend"]


def test_a_forced_restore_is_refused_while_a_container_mounts_the_volume(declared):
    found, client, image = declared
    user = client.containers.run(
        image,
        ["sleep", "60"],
        entrypoint=[],
        detach=True,
        name=f"napdms-live-writer-{secrets.token_hex(3)}",
        volumes=[f"{DOCUMENTS_VOLUME}:/data"],
    )
    try:
        with pytest.raises(backups.BackupCommandError, match=f"{user.name}; stop it first"):
            backups.restore(found, "latest", ["napdms-backend"], runner=found, force=True)
    finally:
        user.remove(force=True)


def test_a_forced_restore_is_the_snapshot_exactly_and_its_safety_snapshot_restores(declared):
    found, client, image = declared
    later = {"late.txt": b"written after the snapshot", "scan.tif": b"changed after the snapshot"}
    _put(client, image, DOCUMENTS_VOLUME, later)
    before = {**DOCUMENTS, **later}
    assert _read_volume(client, image, DOCUMENTS_VOLUME) == before
    job = backups.restore(found, "latest", ["napdms-backend"], force=True)
    assert job.exit_code == 0, job.error
    assert _read_volume(client, image, DOCUMENTS_VOLUME) == DOCUMENTS, "not the snapshot's files"
    safety = job.result["safety_snapshot"]
    assert safety
    back = backups.restore(found, safety, ["napdms-backend"], label=f"s{os.getpid()}")
    try:
        assert back.exit_code == 0, back.error
        assert _read_volume(client, image, back.volumes[0]) == before
    finally:
        _cleanup(client, back)


@pytest.fixture(scope="module")
def staging(agent_image, agent_network):
    """A second stack's agent on the same engine (stack `staging`, a local repository volume),
    with its own documents in its live volume."""
    from components.model.plan import BackupPlan, FilesSource, Repository

    client = ensure_engine()
    tag = secrets.token_hex(3)
    volumes = {
        name: client.volumes.create(f"napdms-staging-{name}-{tag}", labels={"napdms.test": "live"})
        for name in ("config", "secrets", "repository")
    }
    documents = client.volumes.create("napdms-staging-napdms-backend-documents")
    plan = BackupPlan(
        stack="staging",
        host_tag="napdms-staging",
        repository=Repository(url="/repository", password_file="/run/secrets/restic-password"),
        sources=[FilesSource(service="napdms-backend", paths=["/source/napdms-backend/documents"])],
        state_dir="/state",
        cache_dir="/tmp/cache",
    )
    _put(
        client, agent_image, volumes["config"].name, {"plan.json": plan.model_dump_json().encode()}
    )
    _put(client, agent_image, volumes["secrets"].name, {"restic-password": b"staging's own\n"})
    _put(client, agent_image, documents.name, STAGING_DOCUMENTS)
    agent = client.containers.run(
        agent_image,
        ["sleep", "infinity"],
        entrypoint=[],
        detach=True,
        name=f"napdms-staging-backup-agent-{tag}",
        labels={"napdms.stack": "staging", "napdms.service": "backup-agent"},
        network=agent_network,
        read_only=True,
        tmpfs={"/tmp": "rw", "/state": "rw"},
        volumes=[
            f"{volumes['config'].name}:/etc/napdms-backup:ro",
            f"{volumes['secrets'].name}:/run/secrets:ro",
            f"{volumes['repository'].name}:/repository",
            f"{documents.name}:/source/napdms-backend/documents:ro",
        ],
    )
    try:
        code, output = agent.exec_run(
            ["python3", "-m", "napdms_ops.backup", "init", "--plan", "/etc/napdms-backup/plan.json"]
        )
        assert code == 0, output.decode()
        yield backups.find_agent("staging", client), client
    finally:
        agent.remove(force=True)
        for volume in [*volumes.values(), documents]:
            volume.remove(force=True)


STAGING_DOCUMENTS = {"staging-only.txt": b"staging's own file", "scan.tif": b"staging's scan"}


def test_a_cross_stack_forced_restore_keeps_the_targets_safety_copy_in_its_own_repository(
    declared, request
):
    found, client, image = declared
    if not backups._plan(found).repository.url.startswith("sftp:"):
        pytest.skip("another stack reaches the source's repository over the network only")
    target, _ = request.getfixturevalue("staging")
    job = backups.restore(found, "latest", ["napdms-backend"], runner=target, force=True)
    assert job.exit_code == 0, job.error
    live = "napdms-staging-napdms-backend-documents"
    assert _read_volume(client, image, live) == DOCUMENTS, "not the snapshot's files"
    safety = job.result["safety_snapshot"]
    assert safety and job.result["safety_stack"] == "staging"
    back = backups.restore(target, safety, ["napdms-backend"], label=f"x{os.getpid()}")
    try:
        assert back.exit_code == 0, back.error
        assert _read_volume(client, image, back.volumes[0]) == STAGING_DOCUMENTS
    finally:
        _cleanup(client, back)
