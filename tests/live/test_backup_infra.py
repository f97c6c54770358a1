"""The backup tests' infrastructure works: restic reaches the ASUSTOR namespace over SFTP from
the host and from an agent container, the link can be cut and restored, the small disk fills up,
moto's S3 holds a restic repository, the agent stand-in has its tools, PostgreSQL has its data,
and an Asustor leaves nothing behind."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.live.asustor import CONTAINER_KEY_FILE as AGENT_KEY
from tests.live.asustor import CONTAINER_KNOWN_HOSTS_FILE as AGENT_KNOWN_HOSTS
from tests.live.asustor import PREFIX, Asustor

PASSWORD = "a long test password for restic"


def _restic(
    *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    environment = dict(
        os.environ,
        RESTIC_PASSWORD=PASSWORD,
        RESTIC_CACHE_DIR="/tmp/napdms-live-restic-cache",
        **(env or {}),
    )
    return subprocess.run(
        ["restic", *args], capture_output=True, text=True, env=environment, timeout=timeout
    )


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, (
        f"{done.args[:1]}... exited {done.returncode}: {done.stderr[-2000:]}"
    )
    return done.stdout


@pytest.fixture
def files(tmp_path) -> Path:
    root = tmp_path / "source"
    (root / "sub").mkdir(parents=True)
    (root / "small.txt").write_text("NAP-DMS\n" * 100)
    (root / "sub" / "random.bin").write_bytes(os.urandom(3 * 2**20))
    return root


# ------------------------------------------------------------------ sftp


def test_restic_backs_up_to_the_asustor_over_sftp_from_the_host(asustor, files):
    url = asustor.repo_url("host-repo")
    _ok(_restic(*asustor.sftp_option(), "-r", url, "init"))
    _ok(_restic(*asustor.sftp_option(), "-r", url, "backup", str(files)))
    _ok(_restic(*asustor.sftp_option(), "-r", url, "check", "--read-data"))
    assert (asustor.data_dir / "host-repo" / "config").is_file()
    assert any((asustor.data_dir / "host-repo" / "data").rglob("*")), "no pack files on the ASUSTOR"


def test_restic_reaches_the_asustor_from_an_agent_container(asustor, run_agent):
    code, output = run_agent(
        [
            "restic",
            *asustor.sftp_option(AGENT_KEY, AGENT_KNOWN_HOSTS),
            "-r",
            asustor.repo_url("agent-repo"),
            "init",
        ],
        entrypoint=[],
        env={"RESTIC_PASSWORD": PASSWORD},
        asustor=asustor,
        timeout_s=60,
    )
    assert code == 0, output
    assert (asustor.data_dir / "agent-repo" / "config").is_file()


def test_the_asustor_only_accepts_the_generated_key(asustor, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    done = subprocess.run(
        [*asustor.ssh_argv(key_file=str(other)), "true"], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 255 and "Permission denied" in done.stderr


# ------------------------------------------------------------------ link cut


def test_a_cut_link_fails_new_ssh_connections_and_restoring_brings_them_back(asustor):
    assert asustor.ssh("echo", "up").stdout.strip() == "up"
    asustor.cut()
    started = time.monotonic()
    done = asustor.ssh("true")
    assert done.returncode == 255 and "No route to host" in done.stderr, done.stderr
    assert time.monotonic() - started < 5, "a cut link must fail fast, not hang"
    asustor.restore()
    assert asustor.ssh("echo", "back").stdout.strip() == "back"


def test_a_cut_link_breaks_an_established_ssh_session(asustor):
    session = subprocess.Popen(
        [
            *asustor.ssh_argv(
                options=["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"]
            ),
            "sleep",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while "sleep 60" not in asustor_processes(asustor) and time.monotonic() < deadline:
            time.sleep(0.1)
        asustor.cut()
        started = time.monotonic()
        _, stderr = session.communicate(timeout=15)
        assert session.returncode == 255, stderr
        assert time.monotonic() - started < 10
    finally:
        session.kill()
        session.wait()


def asustor_processes(asustor) -> str:
    pids = subprocess.run(
        ["ip", "netns", "pids", asustor.name], capture_output=True, text=True
    ).stdout.split()
    return " ".join(
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        for pid in pids
        if Path(f"/proc/{pid}").exists()
    )


def test_cut_for_cuts_then_restores_on_its_own(asustor):
    outage = asustor.cut_for(1.5, after=0.2)
    time.sleep(0.5)
    assert not asustor.link_is_up() and not asustor.reachable()
    outage.join(timeout=15)
    assert not outage.is_alive()
    assert asustor.link_is_up() and asustor.reachable()


# ------------------------------------------------------------------ full disk


def test_small_disk_runs_out_of_space(asustor):
    disk = asustor.small_disk(2)
    with pytest.raises(OSError) as raised, open(disk / "big.bin", "wb") as big:
        big.write(os.urandom(3 * 2**20))
    assert raised.value.errno == errno.ENOSPC


def test_small_disk_is_what_sftp_sees(asustor, tmp_path):
    disk = asustor.small_disk(2)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20))
    done = subprocess.run(
        ["sftp", "-q", "-b", "-", *asustor.ssh_argv()[1:-1], f"{asustor.user}@{asustor.address}"],
        input=f"df {disk}\nput {big} {disk}/big.bin\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0, "a 3 MiB upload fit on a 2 MiB disk"
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "Avail" in line)
    assert int(lines[header + 1].split()[0]) == 2048, done.stdout  # KiB


# ------------------------------------------------------------------ S3


def test_moto_bucket_takes_versioning_and_object_lock(s3_server):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="offsite", ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket="offsite", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="offsite", Key="probe", Body=b"one")
    s3.put_object(Bucket="offsite", Key="probe", Body=b"two")
    assert (
        s3.get_object_lock_configuration(Bucket="offsite")["ObjectLockConfiguration"][
            "ObjectLockEnabled"
        ]
        == "Enabled"
    )
    assert len(s3.list_object_versions(Bucket="offsite", Prefix="probe")["Versions"]) == 2


def test_restic_keeps_a_repository_on_moto_s3_with_default_retention(s3_server, files):
    s3 = s3_server.client()
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    s3.put_bucket_versioning(Bucket="locked", VersioningConfiguration={"Status": "Enabled"})
    # moto (like S3) then insists on Content-MD5 for every upload; restic's minio-go sends it.
    s3.put_object_lock_configuration(
        Bucket="locked",
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    url = s3_server.repo_url("locked", "napdms")
    _ok(_restic("-r", url, "init", env=s3_server.env()))
    _ok(_restic("-r", url, "backup", str(files), env=s3_server.env()))
    _ok(_restic("-r", url, "check", "--read-data", env=s3_server.env()))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="locked", Prefix="napdms/")["Contents"]]
    assert "napdms/config" in keys and any(k.startswith("napdms/data/") for k in keys)


def test_an_agent_container_reaches_moto_s3(s3_server, run_agent):
    s3_server.client().create_bucket(Bucket="from-agent")
    code, output = run_agent(
        ["restic", "-r", s3_server.repo_url("from-agent", "repo"), "init"],
        entrypoint=[],
        env={"RESTIC_PASSWORD": PASSWORD, **s3_server.env()},
        timeout_s=60,
    )
    assert code == 0, output


# ------------------------------------------------------------------ agent image


@pytest.mark.parametrize(
    "command, expected",
    [
        (
            [
                "python3",
                "-c",
                "import components.model.plan, pydantic, boto3; print(pydantic.VERSION)",
            ],
            "2.13.4",
        ),
        (["restic", "version"], "restic 0.14"),
        (["pg_dump", "--version"], "pg_dump (PostgreSQL) 15"),
        (["initdb", "--version"], "initdb (PostgreSQL) 15"),
        (["pg_ctl", "--version"], "pg_ctl (PostgreSQL) 15"),
        (["ssh", "-V"], "OpenSSH_9"),
        (["redis-cli", "--version"], "redis-cli 7"),
    ],
)
def test_agent_image_has_the_tool(run_agent, command, expected):
    code, output = run_agent(command, entrypoint=[], read_only=True, timeout_s=60)
    assert code == 0 and expected in output, output


def test_agent_image_entrypoint_is_the_backup_cli(run_agent):
    code, output = run_agent(["--help"], read_only=True, timeout_s=60)
    assert code == 0 and "python3 -m napdms_ops.backup" in output, output


# ------------------------------------------------------------------ PostgreSQL


def test_postgres_has_the_generated_data(postgres_with_data):
    assert postgres_with_data.psql("SELECT count(*) FROM documents") == "100000"
    assert (
        postgres_with_data.psql("SELECT count(*) FROM documents WHERE length(content) = 65536")
        == "100"
    )
    assert postgres_with_data.psql("SELECT last_value FROM invoice_number") == "100041"
    indexes = postgres_with_data.psql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'documents' ORDER BY 1"
    ).split()
    assert {"documents_created_at", "documents_title", "documents_pkey"} <= set(indexes)


def test_an_agent_container_dumps_postgres_by_its_alias(postgres_with_data, run_agent):
    server = postgres_with_data
    code, output = run_agent(
        [
            "sh",
            "-c",
            f"pg_dump -h {server.alias} -U {server.user} -d {server.database} -Fc | wc -c",
        ],
        entrypoint=[],
        env={"PGPASSWORD": server.password},
        timeout_s=120,
    )
    assert code == 0 and int(output.split()[-1]) > 1_000_000, output


# ------------------------------------------------------------------ cleanup


def _traces(name: str) -> list[str]:
    found = []
    if name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        found.append("namespace")
    if Path("/tmp", name).exists():
        found.append("directory")
    if name in Path("/proc/self/mounts").read_text():
        found.append("mount")
    return found


def test_close_leaves_nothing_behind():
    asustor = Asustor()
    asustor.small_disk(1)
    name, veth, subnet = asustor.name, asustor.host_veth, asustor.subnet
    asustor.close()
    assert _traces(name) == []
    assert not Path("/sys/class/net", veth).exists()
    assert (
        subnet
        not in subprocess.run(
            ["ip", "route", "show", "table", "all"], capture_output=True, text=True
        ).stdout
    )


def test_leftovers_of_a_crashed_run_are_removed_by_the_next_one():
    crash = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, %r)
        from tests.live.asustor import Asustor
        box = Asustor()
        box.small_disk(1)
        print(box.name, flush=True)
        os._exit(1)  # no close(), no atexit: as if the test process had been killed
        """
    ) % str(Path(__file__).resolve().parents[2])
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60)
    name = done.stdout.strip()
    assert name.startswith(PREFIX) and _traces(name), done.stderr
    with Asustor() as fresh:
        assert _traces(name) == [], f"{name} survived the next Asustor's set-up"
        assert fresh.ssh("true").returncode == 0
