"""Backups end to end on real parts: PostgreSQL in a container with generated data, volume files,
and the ASUSTOR as a network namespace running openssh-server, reached over SFTP by restic.

Backup -> drop everything -> restore gives byte-identical files and equal table checksums; a link
cut mid-run is retried and never leaves a half-recorded run or a damaged repository; a full
target, a wrong key and a failing dump each fail the way the operators need."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from components.model.plan import (
    BackupPlan,
    FilesSource,
    Offsite,
    PostgresqlSource,
    Repository,
    Schedule,
    SftpAccess,
)
from napdms_ops.backup.drill import drill
from napdms_ops.backup.hooks import postgresql
from napdms_ops.backup.manifest import manifests
from napdms_ops.backup.metrics import read_state, render
from napdms_ops.backup.restore import restore
from napdms_ops.backup.run import repository, run_backup, verify
from tests.backup_files import tree
from tests.live.asustor import Asustor

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def documents(tmp_path):
    """A NAP-DMS documents volume: files of mixed sizes, one over restic's chunk size."""
    root = tmp_path / "source" / "napdms-backend" / "documents"
    for index, size in enumerate((0, 1, 4096, 70_000, 3_000_000, 12_000_000)):
        path = root / f"folder{index % 2}" / f"doc{index}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "readme.txt").write_text("NAP-DMS documents\n" * 1000)
    return root


def _plan(tmp_path: Path, asustor: Asustor, sources, repo: str = "repo", **schedule) -> BackupPlan:
    password = tmp_path / "restic-password"
    if not password.exists():
        password.write_text("a long generated restic password\n")
    return BackupPlan(
        stack="dev",
        host_tag="napdms-dev",
        repository=Repository(
            url=asustor.repo_url(f"{asustor.data_dir}/{tmp_path.name}-{repo}"),
            password_file=str(password),
            sftp=SftpAccess(
                key_file=str(asustor.key_file),
                known_hosts_file=str(asustor.known_hosts_file),
                alive_interval_s=1,
                alive_count_max=2,
                connect_timeout_s=3,
            ),
        ),
        sources=sources,
        schedule=Schedule(**({"retries": 2, "retry_delay_s": 1} | schedule)),
        state_dir=str(tmp_path / "state"),
        cache_dir=str(tmp_path / "cache"),
    )


@pytest.fixture(scope="module")
def asustor():
    """One ASUSTOR for the module (each test uses its own repository path on it)."""
    box = Asustor()
    try:
        yield box
    finally:
        box.close()


def _postgres_source(server, password_file=None) -> PostgresqlSource:
    return PostgresqlSource(
        service="postgres",
        host=server.host,
        port=server.port,
        user=server.user,
        password_file=str(password_file or server.password_file),
    )


def _documents_source(root: Path) -> FilesSource:
    return FilesSource(service="napdms-backend", paths=[str(root)])


def _repository_files(asustor: Asustor, plan: BackupPlan) -> list[str]:
    root = Path(plan.repository.url.split(":", 2)[2])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_backup_drop_everything_restore_gives_identical_files_and_tables(
    tmp_path, asustor, documents, docker_client, agent_network
):
    from tests.live.postgres_data import start_postgres

    server = start_postgres(
        docker_client, agent_network, name=f"napdms-live-pg-{tmp_path.name[-12:]}"
    )
    try:
        server.fill(rows=50_000)
        tables_before = server.checksums()
        files_before = tree(documents)
        plan = _plan(tmp_path, asustor, [_documents_source(documents), _postgres_source(server)])
        assert run_backup(plan).state.success

        subprocess.run(["rm", "-rf", str(documents)], check=True)
        server.psql("DROP DATABASE napdms", database="postgres")

        into = tmp_path / "restored"
        report = restore(plan, "latest", str(into), verify=True)
        record = manifests(plan, repository(plan))[-1].services["postgres"]
        env = dict(os.environ, **server.env("postgres"))
        postgresql.load(plan.sources[1], record, str(into), env)
        assert tree(into / str(documents).lstrip("/")) == files_before, "restored documents differ"
        assert server.checksums() == tables_before, "restored tables differ"
        assert set(report.services) == {"napdms-backend", "postgres"}
    finally:
        server.remove()


def test_a_link_cut_mid_run_is_retried_and_leaves_one_sound_run(tmp_path, asustor, documents):
    (documents / "large.bin").write_bytes(os.urandom(48_000_000))
    plan = _plan(tmp_path, asustor, [_documents_source(documents)], retries=3, retry_delay_s=2)
    data = Path(plan.repository.url.split(":", 2)[2]) / "data"
    result = {}
    runner = threading.Thread(target=lambda: result.update(outcome=run_backup(plan)))
    runner.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (data.exists() and any(data.rglob("*"))):
        time.sleep(0.05)
    assert data.exists(), "restic never started writing packs"
    asustor.cut_for(4)
    runner.join(timeout=300)
    state = result["outcome"].state
    assert state.success and state.attempts >= 2, (
        f"success={state.success} after {state.attempts} attempts: {state.error}"
    )
    assert len(manifests(plan, repository(plan))) == 1, "an interrupted attempt left a run behind"
    verify(plan, repository(plan), full=True)


def test_a_link_down_for_the_whole_run_records_a_network_failure_and_no_run(
    tmp_path, asustor, documents
):
    plan = _plan(tmp_path, asustor, [_documents_source(documents)], retries=1, retry_delay_s=0.5)
    assert run_backup(plan).state.success
    asustor.cut()
    try:
        state = run_backup(plan).state
    finally:
        asustor.restore()
    assert (state.success, state.reason) == (False, "network")
    assert 'napdms_backup_failure{stack="dev",reason="network"} 1' in render(
        read_state(plan.state_dir)
    )
    assert len(manifests(plan, repository(plan))) == 1, "the failed run was recorded"
    verify(plan, repository(plan), full=True)


def test_a_full_target_disk_fails_with_disk_full_and_its_alert_metric(tmp_path, asustor, documents):
    (documents / "large.bin").write_bytes(os.urandom(24_000_000))
    small = asustor.small_disk(8)
    plan = _plan(tmp_path, asustor, [_documents_source(documents)], retries=1, retry_delay_s=0)
    plan = plan.model_copy(
        update={
            "repository": plan.repository.model_copy(
                update={"url": asustor.repo_url(f"{small}/repo")}
            )
        }
    )
    state = run_backup(plan).state
    assert (state.success, state.reason) == (False, "disk-full"), state.error
    assert "free space on the backup target" in state.error
    assert 'napdms_backup_failure{stack="dev",reason="disk-full"} 1' in render(
        read_state(plan.state_dir)
    )


def test_a_wrong_key_fails_at_once_and_writes_nothing(tmp_path, asustor, documents):
    plan = _plan(tmp_path, asustor, [_documents_source(documents)])
    assert run_backup(plan).state.success
    before = _repository_files(asustor, plan)
    Path(plan.repository.password_file).write_text("somebody else's password\n")
    state = run_backup(plan).state
    assert (state.success, state.reason, state.attempts) == (False, "wrong-password", 1)
    assert _repository_files(asustor, plan) == before, "the repository changed"


def test_a_failing_dump_fails_its_service_and_the_others_are_backed_up(
    tmp_path, asustor, documents, postgres_with_data
):
    wrong = tmp_path / "wrong-db-password"
    wrong.write_text("not the postgres password\n")
    plan = _plan(
        tmp_path,
        asustor,
        [_documents_source(documents), _postgres_source(postgres_with_data, wrong)],
        retries=1,
        retry_delay_s=0,
    )
    outcome = run_backup(plan)
    statuses = {name: record.status for name, record in outcome.manifest.services.items()}
    assert statuses == {"napdms-backend": "ok", "postgres": "failed"}
    assert 'napdms_backup_service_success{stack="dev",service="postgres"} 0' in render(
        outcome.state
    )
    restore(plan, "latest", str(tmp_path / "restored"), services=["napdms-backend"])
    assert tree(tmp_path / "restored" / str(documents).lstrip("/")) == tree(documents)


def test_the_drill_loads_postgres_and_matches_every_table(
    tmp_path, asustor, documents, postgres_with_data
):
    plan = _plan(
        tmp_path, asustor, [_documents_source(documents), _postgres_source(postgres_with_data)]
    )
    assert run_backup(plan).state.success
    report = drill(plan)
    assert report.ok and not report.problems, report.problems
    assert report.rto_seconds > 0 and report.restored_bytes > 0


def test_the_drill_reports_a_table_that_does_not_match_its_recorded_checksum(
    tmp_path, asustor, documents, postgres_with_data
):
    plan = _plan(
        tmp_path, asustor, [_documents_source(documents), _postgres_source(postgres_with_data)]
    )
    manifest = run_backup(plan).manifest
    cached = (
        Path(plan.state_dir)
        / "manifests"
        / f"{manifests(plan, repository(plan))[-1].snapshot}.json"
    )
    recorded = manifest.model_copy(deep=True)
    recorded.snapshot = manifests(plan, repository(plan))[-1].snapshot
    recorded.services["postgres"].tables["napdms"]["public.documents"].rows += 1
    cached.write_text(recorded.model_dump_json())
    report = drill(plan)
    assert not report.ok and any("public.documents" in problem for problem in report.problems), (
        report.problems
    )


def test_each_run_is_copied_offsite_to_s3_and_restores_from_there(tmp_path, asustor, documents):
    from napdms_ops.backup import offsite
    from tests.live.s3server import S3Server

    with S3Server(asustor) as s3:
        keys = tmp_path / "s3-access-key", tmp_path / "s3-secret-key"
        keys[0].write_text(s3.access_key)
        keys[1].write_text(s3.secret_key)
        plan = _plan(tmp_path, asustor, [_documents_source(documents)])
        remote = Repository(
            url=s3.repo_url("napdms-offsite", "dev"),
            password_file=plan.repository.password_file,
            s3_access_key_file=str(keys[0]),
            s3_secret_key_file=str(keys[1]),
        )
        plan = plan.model_copy(
            update={
                "offsite": Offsite(
                    repository=remote,
                    endpoint=s3.endpoint_url,
                    bucket="napdms-offsite",
                    region=s3.region,
                )
            }
        )
        assert offsite.prepare_bucket(plan.offsite, s3.access_key, s3.secret_key).ok
        state = run_backup(plan).state
        assert state.success and state.offsite_success, state.error
        from_s3 = plan.model_copy(
            update={"repository": remote, "offsite": None, "state_dir": str(tmp_path / "s3-state")}
        )
        restore(from_s3, "latest", str(tmp_path / "restored"))
        assert tree(tmp_path / "restored" / str(documents).lstrip("/")) == tree(documents)
