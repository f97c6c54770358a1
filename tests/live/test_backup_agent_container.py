"""The operators' commands against a running agent container, hardened as the program declares it
(root with only DAC_READ_SEARCH, read-only root filesystem, no-new-privileges, volumes for plan,
secrets and source data): `backup run` inside it, metrics on :9102, `restore` into fresh volumes
and `drill` in one-shot jobs, found by the labels the program sets."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time

import pytest

from components.model.plan import BackupPlan, FilesSource, PostgresqlSource, Repository, SftpAccess
from napdms_ops import backups

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

STACK = "dev"
DOCUMENTS = {
    "letters/2026/offer.pdf": os.urandom(300_000),
    "letters/empty.txt": b"",
    "scan.tif": os.urandom(2_500_000),
}


def _archive(root: str, files: dict[str, bytes], mode: int = 0o400) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _read_volume(client, image: str, volume: str) -> dict[str, bytes]:
    script = (
        "import os,json,base64;"
        "print(json.dumps({os.path.relpath(os.path.join(r,n),'/v'): "
        "base64.b64encode(open(os.path.join(r,n),'rb').read()).decode() "
        "for r,_,ns in os.walk('/v') for n in ns}))"
    )
    output = client.containers.run(
        image,
        ["-c", script],
        entrypoint=["python3"],
        volumes={volume: {"bind": "/v", "mode": "ro"}},
        remove=True,
    )
    return {name: base64.b64decode(data) for name, data in json.loads(output).items()}


@pytest.fixture(scope="module")
def agent(docker_client, agent_image, agent_network, postgres_with_data):
    from tests.live.asustor import Asustor

    box = Asustor()
    made = []
    try:
        prefix = f"napdms-{STACK}"
        plan = BackupPlan(
            stack=STACK,
            host_tag=f"napdms-{STACK}",
            repository=Repository(
                url=box.repo_url(f"{box.data_dir}/agent-repo"),
                password_file="/run/secrets/restic-password",
                sftp=SftpAccess(
                    key_file="/run/secrets/backup-ssh-key",
                    known_hosts_file="/etc/napdms-backup/known_hosts",
                ),
            ),
            sources=[
                FilesSource(service="napdms-backend", paths=["/source/napdms-backend/documents"]),
                PostgresqlSource(
                    service="postgres",
                    host="postgres",
                    password_file="/run/secrets/postgres-password",
                ),
            ],
            state_dir="/state",
            cache_dir="/cache",
        )
        volumes = {
            name: f"{prefix}-{name}-{os.getpid()}"
            for name in ("config", "secrets", "state", "cache")
        }
        documents = f"{prefix}-napdms-backend-documents"
        for name in [*volumes.values(), documents]:
            made.append(docker_client.volumes.create(name, labels={"napdms.stack": STACK}))
        container = docker_client.containers.create(
            agent_image,
            ["agent", "--plan", "/etc/napdms-backup/plan.json"],
            name=f"{prefix}-backup-agent-live-{os.getpid()}",
            user="0",
            cap_drop=["ALL"],
            cap_add=["DAC_READ_SEARCH"],
            security_opt=["no-new-privileges:true"],
            read_only=True,
            tmpfs={"/tmp": "rw,size=256m"},
            network=agent_network,
            labels={
                "napdms.stack": STACK,
                "napdms.service": "backup-agent",
                "napdms.managed-by": "pulumi",
            },
            volumes=[
                f"{volumes['config']}:/etc/napdms-backup:ro",
                f"{volumes['secrets']}:/run/secrets:ro",
                f"{volumes['state']}:/state",
                f"{volumes['cache']}:/cache",
                f"{documents}:/source/napdms-backend/documents:ro",
            ],
        )
        seeder = docker_client.containers.create(
            agent_image,
            ["true"],
            volumes=[
                f"{volumes['config']}:/seed/config",
                f"{volumes['secrets']}:/seed/secrets",
                f"{documents}:/seed/documents",
            ],
        )
        seeder.put_archive(
            "/seed",
            _archive(
                "config",
                {
                    "plan.json": plan.model_dump_json().encode(),
                    "known_hosts": box.known_hosts_file.read_bytes(),
                },
                0o444,
            ),
        )
        seeder.put_archive(
            "/seed",
            _archive(
                "secrets",
                {
                    "restic-password": b"live agent password\n",
                    "backup-ssh-key": box.key_file.read_bytes(),
                    "postgres-password": postgres_with_data.password_file.read_bytes(),
                },
            ),
        )
        seeder.put_archive("/seed", _archive("documents", DOCUMENTS, 0o640))
        seeder.remove()
        container.start()
        yield {
            "container": container,
            "client": docker_client,
            "image": agent_image,
            "documents": documents,
        }
        container.remove(force=True)
    finally:
        for volume in made:
            try:
                volume.remove(force=True)
            except Exception:
                pass
        box.close()


@pytest.fixture(scope="module")
def found(agent):
    return backups.find_agent(STACK, agent["client"])


@pytest.fixture(scope="module")
def ran(found):
    return backups.run_in_agent(found, "run")


def test_backup_run_in_the_hardened_agent_backs_up_every_service(ran):
    code, result, error = ran
    assert code == 0 and result["success"], error
    assert result["services"] == {"napdms-backend": True, "postgres": True}


def test_the_agent_serves_its_metrics(found, ran):
    deadline = time.monotonic() + 20
    while True:
        code, output = found.container.exec_run(
            [
                "python3",
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9102/metrics').read().decode())",
            ]
        )
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert 'napdms_backup_last_run_success{stack="dev"} 1' in output.decode()


def test_restore_puts_the_documents_into_fresh_volumes(agent, found, ran):
    job = backups.restore(found, "latest", ["napdms-backend"], label=f"t{os.getpid()}")
    try:
        assert job.exit_code == 0, job.error
        assert all(agent["client"].volumes.get(name) for name in job.volumes)
        assert _read_volume(agent["client"], agent["image"], job.volumes[0]) == DOCUMENTS
    finally:
        for name in job.volumes:
            agent["client"].volumes.get(name).remove(force=True)


def test_a_second_restore_with_the_same_label_is_refused(agent, found, ran):
    label = f"dup{os.getpid()}"
    job = backups.restore(found, "latest", ["napdms-backend"], label=label)
    try:
        with pytest.raises(backups.BackupCommandError, match="exist already"):
            backups.restore(found, "latest", ["napdms-backend"], label=label)
    finally:
        for name in job.volumes:
            agent["client"].volumes.get(name).remove(force=True)


def test_drill_in_a_one_shot_job_verifies_files_and_tables(found, ran):
    job = backups.drill(found, "latest", 500 * 10**9)
    assert job.exit_code in (0, 1), job.error
    assert job.result["problems"] == [], job.result
    assert job.result["data_bytes"] == 500 * 10**9 and job.result["rto_seconds"] > 0
