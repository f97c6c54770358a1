"""The postgres stand-in started as the catalog starts PostgreSQL (its command line, its generated
pg_hba.conf mounted read-only with the init script, hardened) accepts the backup agent's
replication connections as the superuser with the password, and refuses every other way in.

Clients run inside the server's container but connect over TCP to its alias on a network, as
the agent does over the data network. These tests need a Docker engine and fail (never skip)
when none can be started.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from docker.errors import NotFound

from components.catalog import generated_files
from components.catalog.postgres import SPEC
from tests.live.standins import standin_image

PGDATA = "/var/lib/postgresql/data"
START_TIMEOUT_S = 120.0


class _Server:
    """A postgres stand-in container on `network`, with the catalog's files and two secrets."""

    def __init__(self, client, network: str, command: list[str] | None):
        self.client = client
        # Its own alias: two servers of this module may share the network.
        self.alias = f"postgres-{secrets.token_hex(4)}"
        self.workdir = Path(tempfile.mkdtemp(prefix="napdms-live-pitr-"))
        self.password = secrets.token_urlsafe(18)
        self.app_password = secrets.token_urlsafe(18)
        secret_dir = self.workdir / "secrets"
        secret_dir.mkdir()
        (secret_dir / "postgres-password").write_text(self.password + "\n")
        (secret_dir / "napdms-db-password").write_text(self.app_password + "\n")
        config_dir = self.workdir / "config"
        config_dir.mkdir()
        for name, content in generated_files(SPEC.name, None).items():
            path = config_dir / name
            path.write_text(content)
            path.chmod(0o555 if name.endswith(".sh") else 0o444)
        for path in (*secret_dir.iterdir(), secret_dir, config_dir, self.workdir):
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        self.volume = client.volumes.create(name=f"napdms-live-pitr-{secrets.token_hex(4)}").name
        self.container = None
        self.network = network
        self.start(command)

    def start(self, command: list[str] | None) -> None:
        """(Re)start the server on the same data volume with `command` (None: the image's)."""
        if self.container is not None:
            self.container.stop(timeout=30)
            self.container.remove(force=True)
        self.container = self.client.containers.run(
            standin_image("postgres", self.client),
            command=command,
            name=f"napdms-live-pitr-{secrets.token_hex(4)}",
            detach=True,
            user=SPEC.user,
            environment=dict(SPEC.env),
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            tmpfs={"/tmp": "size=64m", "/var/run/postgresql": "size=1m"},
            volumes={
                self.volume: {"bind": PGDATA, "mode": "rw"},
                str(self.workdir / "secrets"): {"bind": "/run/secrets", "mode": "ro"},
                str(self.workdir / "config"): {"bind": SPEC.config_dir, "mode": "ro"},
            },
            network=self.network,
            networking_config={
                self.network: self.client.api.create_endpoint_config(aliases=[self.alias])
            },
        )
        self._wait_ready()

    def run(self, argv: list[str], password: str | None = None) -> tuple[int, str]:
        """Run a client in the server's container; `password` as PGPASSWORD, never prompted."""
        env = {"PGPASSWORD": password} if password is not None else {}
        result = self.container.exec_run(argv, environment=env)
        return result.exit_code, result.output.decode(errors="replace")

    def replication(self, user: str = "postgres") -> list[str]:
        """psql opening a physical replication connection as `user` and identifying the server."""
        dsn = f"host={self.alias} user={user} dbname=replication replication=true"
        return ["psql", "-w", dsn, "-c", "IDENTIFY_SYSTEM"]

    def logs(self) -> str:
        return self.container.logs(tail=40).decode(errors="replace")

    def _wait_ready(self) -> None:
        """Until the final server (not the socket-only one of the first start) takes logins over
        TCP."""
        deadline = time.monotonic() + START_TIMEOUT_S
        output = ""
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status not in ("created", "running"):
                raise RuntimeError(f"postgres exited:\n{self.logs()}")
            code, output = self.run(
                ["psql", "-w", "-h", self.alias, "-U", "postgres", "-tAc", "SELECT 1"],
                self.password,
            )
            if code == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"postgres not ready: {output}\n{self.logs()}")

    def remove(self) -> None:
        try:
            if self.container is not None:
                self.container.remove(force=True, v=True)
            self.client.volumes.get(self.volume).remove(force=True)
        except NotFound:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server(docker_client, agent_network):
    """The server as the catalog runs it, from a fresh data directory."""
    started = _Server(docker_client, agent_network, SPEC.command)
    try:
        yield started
    finally:
        started.remove()


def test_health_check_passes_though_no_tcp_connection_is_trusted(server):
    code, output = server.run(SPEC.health.test[1:])
    assert code == 0, f"postgres health check {SPEC.health.test[1:]}: {output}"


def test_superuser_with_its_password_opens_a_replication_connection(server):
    code, output = server.run(server.replication(), server.password)
    assert code == 0, f"postgres: replication as postgres refused: {output}"


def test_superuser_streams_wal_over_a_slot_with_pg_receivewal(server):
    base = ["-w", "-h", server.alias, "-U", "postgres", "--slot", "napdms_test"]
    code, output = server.run(["pg_receivewal", *base, "--create-slot"], server.password)
    assert code == 0, f"postgres: pg_receivewal --create-slot: {output}"
    server.run(["mkdir", "-p", "/tmp/wal"])
    # It streams until stopped: stop it after a few seconds and look at the spool.
    code, output = server.run(
        ["timeout", "3", "pg_receivewal", *base, "-D", "/tmp/wal"], server.password
    )
    assert code == 124, f"postgres: pg_receivewal stopped by itself ({code}): {output}"
    code, listing = server.run(["ls", "/tmp/wal"])
    assert listing.split(), f"postgres: pg_receivewal received no segment: {output}"


def test_replication_without_a_password_is_refused(server):
    code, output = server.run(server.replication())
    assert code != 0 and "no password supplied" in output, (
        f"postgres: replication without a password: {code} {output}"
    )


def test_replication_with_a_wrong_password_is_refused(server):
    code, output = server.run(server.replication(), server.password + "x")
    assert code != 0 and "password authentication failed" in output, (
        f"postgres: replication with a wrong password: {code} {output}"
    )


def test_an_application_role_may_log_in_but_not_replicate(server):
    login = ["psql", "-w", "-h", server.alias, "-U", "napdms", "-d", "napdms", "-tAc", "SELECT 1"]
    code, output = server.run(login, server.app_password)
    assert code == 0, f"postgres: napdms cannot log in: {output}"
    code, output = server.run(server.replication("napdms"), server.app_password)
    assert code != 0 and "no pg_hba.conf entry for replication connection" in output, (
        f"postgres: replication as napdms: {code} {output}"
    )


def test_a_data_directory_initialised_before_gets_the_programs_rules(docker_client, agent_network):
    # Initialised by the image's own command: its pg_hba.conf in PGDATA allows no replication
    # over TCP. Restarted with the catalog's command, the mounted file decides.
    earlier = _Server(docker_client, agent_network, None)
    try:
        code, output = earlier.run(earlier.replication(), earlier.password)
        assert code != 0, f"postgres without the program's rules already replicates: {output}"
        earlier.start(SPEC.command)
        code, output = earlier.run(earlier.replication(), earlier.password)
        assert code == 0, f"postgres on an earlier data directory: replication refused: {output}"
    finally:
        earlier.remove()
