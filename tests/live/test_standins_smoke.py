"""Smoke tests: each stand-in image works when run hardened like production.

Production runs every container with a read-only root filesystem, a fixed
uid, all capabilities dropped, no-new-privileges and a memory limit, with
named volumes for data and tmpfs where the image needs scratch space.  Each
test runs its stand-in exactly that way and waits for the Docker health check
the platform uses.  These tests need a Docker engine and fail (never skip)
when none can be started.
"""

import io
import secrets
import tarfile
import time
import uuid

import pytest
from docker.errors import NotFound

from tests.live import engine, standins

# Unique per run, so that concurrent runs and leftovers never collide.
PREFIX = f"napdms-live-{uuid.uuid4().hex[:8]}"
SECOND_NS = 1_000_000_000
PGDATA = "/var/lib/postgresql/data"
PASSWORD_FILE = "/run/secrets/postgres_password"


def hardening(uid_gid, mem_limit):
    """Container options production applies to every service."""
    return dict(
        user=uid_gid,
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=mem_limit,
    )


def health_check(*test):
    """A Docker health check running test (exec form) every second."""
    return dict(
        test=["CMD", *test],
        interval=SECOND_NS,
        timeout=5 * SECOND_NS,
        retries=3,
        start_period=60 * SECOND_NS,
    )


def tar_of(files):
    """Tar archive of {name: (content, uid, mode)} for put_archive."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, (content, uid, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.uid = info.gid = uid
            info.mode = mode
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class Resources:
    """Creates prefixed containers and volumes and removes them afterwards."""

    def __init__(self, client):
        self.client = client
        self.containers = []
        self.volumes = []

    def volume(self, role):
        name = self.client.volumes.create(name=f"{PREFIX}-{role}").name
        self.volumes.append(name)
        return name

    def container(self, role, image, **options):
        """Create (without starting) a container named after role."""
        container = self.client.containers.create(
            image, name=f"{PREFIX}-{role}", detach=True, **options
        )
        self.containers.append(container)
        return container

    def remove_all(self):
        # Containers first: a volume in use cannot be removed.
        for container in self.containers:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
        for name in self.volumes:
            try:
                self.client.volumes.get(name).remove(force=True)
            except NotFound:
                pass


@pytest.fixture(scope="module")
def client():
    return engine.ensure_engine()


@pytest.fixture
def resources(client):
    tracked = Resources(client)
    yield tracked
    tracked.remove_all()


def describe(container):
    """Logs and health-check output, for assertion messages."""
    container.reload()
    health = container.attrs["State"].get("Health") or {}
    probes = "".join(entry.get("Output", "") for entry in health.get("Log", []))
    logs = container.logs(tail=60).decode(errors="replace")
    return "state={}\nlogs:\n{}\nlast health probes:\n{}".format(
        container.attrs["State"], logs, probes
    )


def wait_healthy(container, timeout_s):
    """Wait until container's health check passes; fail fast if it cannot."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        state = container.attrs["State"]
        status = (state.get("Health") or {}).get("Status")
        if status == "healthy":
            return
        if status == "unhealthy" or not state["Running"]:
            pytest.fail(
                "{} became {}\n{}".format(
                    container.name, status or state["Status"], describe(container)
                )
            )
        time.sleep(0.5)
    pytest.fail(f"{container.name} not healthy within {timeout_s:d} s\n{describe(container)}")


def exec_ok(container, argv, **options):
    """Run argv in container, assert it succeeds and return its output."""
    result = container.exec_run(argv, **options)
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{argv} exited {result.exit_code}:\n{output}"
    return output


def test_engine_answers():
    client = engine.ensure_engine()
    assert client.ping()
    assert engine.ensure_engine() is client


@pytest.mark.parametrize(
    "ref, repo",
    [
        ("postgres", "postgres"),
        ("postgres:15-bookworm", "postgres"),
        ("library/postgres", "postgres"),
        ("docker.io/library/postgres:15@sha256:" + "0" * 64, "postgres"),
        ("redis@sha256:" + "0" * 64, "redis"),
        ("prom/prometheus:v2.53.0", "prom/prometheus"),
        ("docker.io/prom/prometheus", "prom/prometheus"),
        ("localhost:5000/busybox:1.36", "busybox"),
    ],
)
def test_upstream_repo_of(ref, repo):
    assert standins.upstream_repo_of(ref) == repo
    assert repo in standins.STANDINS


def test_unknown_image_has_no_standin(client):
    with pytest.raises(KeyError, match="supported"):
        standins.standin_image("docker.io/library/nginx:1.27", client)


def test_busybox(client, resources):
    image = standins.standin_image("docker.io/library/busybox:1.36", client)
    assert client.images.get(image).attrs["Size"] < 5_000_000
    container = resources.container(
        "busybox",
        image,
        command=["sh", "-c", "id -u; id -g; touch /tmp/ok; test -x /bin/wget; echo done"],
        tmpfs={"/tmp": "size=1m"},
        **hardening("65534:65534", "32m"),
    )
    container.start()
    assert container.wait(timeout=30)["StatusCode"] == 0, describe(container)
    assert container.logs().decode().split() == ["65534", "65534", "done"]


def test_postgres(client, resources):
    image = standins.standin_image("docker.io/library/postgres:15-bookworm", client)
    password = secrets.token_urlsafe(18)
    container = resources.container(
        "postgres",
        image,
        environment={"POSTGRES_PASSWORD_FILE": PASSWORD_FILE, "POSTGRES_DB": "napdms"},
        volumes={
            resources.volume("pgdata"): {"bind": PGDATA, "mode": "rw"},
            # Read-write only because put_archive cannot write into a
            # read-only mount.
            resources.volume("pgsecrets"): {"bind": "/run/secrets", "mode": "rw"},
            resources.volume("pginit"): {"bind": "/docker-entrypoint-initdb.d", "mode": "rw"},
        },
        tmpfs={"/tmp": "size=16m", "/var/run/postgresql": "size=1m"},
        healthcheck=health_check("pg_isready", "-h", "127.0.0.1", "-U", "postgres"),
        **hardening("999:999", "256m"),
    )
    container.put_archive(
        "/run/secrets", tar_of({"postgres_password": (password.encode(), 999, 0o400)})
    )
    # One init file of each kind the entrypoint handles: SQL run by psql, and
    # a non-executable shell script that is sourced and uses its helpers.
    container.put_archive(
        "/docker-entrypoint-initdb.d",
        tar_of(
            {
                "10-schema.sql": (b"CREATE TABLE probe (source text);\n", 0, 0o644),
                "20-seed.sh": (
                    b"docker_process_sql -c \"INSERT INTO probe VALUES ('sh')\"\n",
                    0,
                    0o644,
                ),
            }
        ),
    )
    container.start()
    wait_healthy(container, timeout_s=90)

    query = ["psql", "-d", "napdms", "-U", "postgres", "-tAc", "SELECT source FROM probe"]
    tcp_local = exec_ok(
        container, query[:1] + ["-h", "127.0.0.1"] + query[1:], environment={"PGPASSWORD": password}
    )
    assert tcp_local.strip() == "sh"
    # Loopback is trust, as upstream's pg_hba.conf has it; the password rule
    # applies to other addresses, so also connect via the container's own IP.
    container.reload()
    address = container.attrs["NetworkSettings"]["IPAddress"]
    assert address, describe(container)
    remote = query[:1] + ["-h", address] + query[1:]
    assert exec_ok(container, remote, environment={"PGPASSWORD": password}).strip() == "sh"
    wrong = container.exec_run(remote, environment={"PGPASSWORD": password + "x"})
    assert wrong.exit_code != 0
    assert b"password authentication failed" in wrong.output


def test_redis(client, resources):
    image = standins.standin_image("docker.io/library/redis:7-bookworm", client)
    container = resources.container(
        "redis",
        image,
        volumes={resources.volume("redisdata"): {"bind": "/data", "mode": "rw"}},
        healthcheck=health_check("redis-cli", "ping"),
        **hardening("999:999", "128m"),
    )
    container.start()
    wait_healthy(container, timeout_s=30)
    # SAVE writes /data/dump.rdb: proves the volume is writable for uid 999.
    assert exec_ok(container, ["redis-cli", "SAVE"]).strip() == "OK"
    assert exec_ok(container, ["redis-cli", "CONFIG", "GET", "protected-mode"]).split() == [
        "protected-mode",
        "no",
    ]


def test_prometheus(client, resources):
    image = standins.standin_image("prom/prometheus:v2.53.0", client)
    container = resources.container(
        "prometheus",
        image,
        volumes={resources.volume("promdata"): {"bind": "/prometheus", "mode": "rw"}},
        healthcheck=health_check("wget", "-qO-", "http://127.0.0.1:9090/-/healthy"),
        **hardening("65534:65534", "256m"),
    )
    container.start()
    wait_healthy(container, timeout_s=60)
    assert "Ready" in exec_ok(container, ["wget", "-qO-", "http://127.0.0.1:9090/-/ready"])
