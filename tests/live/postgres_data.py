"""PostgreSQL with generated data for the backup tests: the postgres stand-in in a container.

    server = start_postgres(client, network="napdms-live-1234")  # published on 127.0.0.1:<port>
    server.fill(rows=100_000)  # documents, folders, audit log, a sequence
    before = server.checksums()
    ... back up, drop, restore ...
    assert server.checksums() == before
    server.remove()

The container joins `network` (a Docker network the agent's containers share) under the alias
`server.alias`, so they reach it at `<alias>:5432`; the host reaches it at
`server.host:server.port` with psql (postgresql-client on the host). The superuser password is
generated and handed over as a file (POSTGRES_PASSWORD_FILE), as the platform does.  Data is
generated deterministically, so two fills of the same size give the same checksums.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import NotFound

from tests.live.standins import standin_image

START_TIMEOUT_S = 120.0
SECRET_PATH = "/run/secrets/postgres-password"

FILL_SQL = r"""
\set ON_ERROR_STOP on
CREATE TABLE folders (
    id serial PRIMARY KEY,
    path text NOT NULL UNIQUE
);
CREATE TABLE documents (
    id bigserial PRIMARY KEY,
    folder_id integer NOT NULL REFERENCES folders (id),
    title text NOT NULL,
    body text NOT NULL,
    content bytea NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id),
    action text NOT NULL,
    at timestamptz NOT NULL
);
CREATE SEQUENCE invoice_number START 100000;

INSERT INTO folders (path) SELECT '/department-' || g || '/inbox' FROM generate_series(1, 50) AS g;
-- Text of varying length, bytea of 32 bytes and, every 1000th row, 64 KiB (stored out of line
-- by TOAST), all derived from the row number so the data is the same on every run.
INSERT INTO documents (folder_id, title, body, content, created_at)
SELECT 1 + g % 50,
       'Document ' || g,
       repeat(md5(g::text) || ' ', 1 + g % 8),
       CASE WHEN g % 1000 = 0 THEN decode(repeat(md5(g::text), 4096), 'hex')
            ELSE decode(md5(g::text) || md5((-g)::text), 'hex') END,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '37 seconds'
FROM generate_series(1, :rows) AS g;
CREATE INDEX documents_created_at ON documents (created_at);
CREATE INDEX documents_title ON documents (title);
INSERT INTO audit_log (document_id, action, at)
SELECT 1 + (g * 7919) % :rows,
       (ARRAY['create', 'read', 'update', 'share'])[1 + g % 4],
       timestamptz '2026-02-01 00:00:00+00' + g * interval '11 seconds'
FROM generate_series(1, greatest(:rows / 10, 1)) AS g;
SELECT count(nextval('invoice_number')) FROM generate_series(1, 42);
ANALYZE;
"""


@dataclass
class PostgresServer:
    """A running postgres stand-in; connection details for the host and for containers."""

    client: docker.DockerClient
    container: docker.models.containers.Container
    network: str
    alias: str
    """Host name of the server on `network` (containers connect to alias:5432)."""
    host: str
    """Address of the published port on the host (127.0.0.1)."""
    port: int
    user: str
    password_file: Path
    """Host file holding the superuser password (also mounted at SECRET_PATH in the container)."""
    database: str
    workdir: Path
    tables: list[str] = field(default_factory=list)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def env(self, database: str | None = None) -> dict[str, str]:
        """libpq environment for the host's psql/pg_dump."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database or self.database,
            "PGCONNECT_TIMEOUT": "5",
        }

    def psql(self, sql: str, database: str | None = None, timeout: float = 300, **variables) -> str:
        """Run sql (psql script, :name variables allowed) from the host; return unaligned output."""
        argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        for name, value in variables.items():
            argv += ["-v", f"{name}={value}"]
        done = subprocess.run(
            argv,
            input=sql,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(os.environ, **self.env(database)),
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql on {self.host}:{self.port} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def fill(self, rows: int = 100_000, database: str | None = None) -> dict[str, int]:
        """Create the generated schema and data in database (default: self.database); return row
        counts."""
        self.psql(FILL_SQL, database, rows=rows)
        self.tables = ["folders", "documents", "audit_log"]
        return {
            table: int(self.psql(f"SELECT count(*) FROM {table}", database))
            for table in self.tables
        }

    def checksums(self, database: str | None = None) -> dict[str, str]:
        """md5 over every row of each public table (in key order), plus each sequence's state."""
        result = {}
        tables = self.psql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            database,
        ).split()
        for table in tables:
            result[table] = self.psql(
                "SELECT count(*) || ':' || "
                "coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') "
                f"FROM {table} AS t",
                database,
            )
        sequences = self.psql(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' "
            "ORDER BY sequencename",
            database,
        ).split()
        for sequence in sequences:
            result["sequence:" + sequence] = self.psql(
                f"SELECT last_value || ':' || is_called FROM {sequence}", database
            )
        return result

    def remove(self) -> None:
        """Delete the container (and its anonymous data volume) and the password file."""
        try:
            self.container.remove(force=True, v=True)
        except NotFound:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres(
    client: docker.DockerClient,
    network: str,
    *,
    name: str | None = None,
    alias: str = "postgres",
    database: str = "napdms",
    user: str = "postgres",
    timeout_s: float = START_TIMEOUT_S,
) -> PostgresServer:
    """Start the postgres stand-in on `network` (must not be internal: the port is published on
    127.0.0.1), wait until it accepts connections from the host, return its details."""
    if shutil.which("psql") is None:
        raise RuntimeError(
            "the host needs psql: apt-get install -y postgresql-client (or postgresql-15)"
        )
    image = standin_image("postgres", client)
    name = name or f"napdms-live-postgres-{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix=name + "-"))
    password_file = workdir / "postgres-password"
    password_file.write_text(secrets.token_urlsafe(24) + "\n")
    password_file.chmod(0o644)
    container = client.containers.run(
        image,
        name=name,
        detach=True,
        environment={
            "POSTGRES_PASSWORD_FILE": SECRET_PATH,
            "POSTGRES_DB": database,
            "POSTGRES_USER": user,
        },
        volumes={str(password_file): {"bind": SECRET_PATH, "mode": "ro"}},
        ports={"5432/tcp": ("127.0.0.1", None)},
        network=network,
        networking_config={network: client.api.create_endpoint_config(aliases=[alias])},
        # Small shared buffers keep parallel test servers cheap; fsync off: nothing here must
        # survive a crash.
        command=[
            "postgres",
            "-c",
            "shared_buffers=64MB",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ],
    )
    server = None
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"])
        server = PostgresServer(
            client,
            container,
            network,
            alias,
            "127.0.0.1",
            port,
            user,
            password_file,
            database,
            workdir,
        )
        _wait_ready(server, timeout_s)
        return server
    except BaseException:
        if server is not None:
            server.remove()
        else:
            container.remove(force=True, v=True)
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _wait_ready(server: PostgresServer, timeout_s: float) -> None:
    """Wait for the final server (not the entrypoint's socket-only init server) to take queries."""
    deadline = time.monotonic() + timeout_s
    error = ""
    while time.monotonic() < deadline:
        server.container.reload()
        if server.container.status not in ("created", "running"):
            raise RuntimeError(
                "postgres container exited: {}".format(
                    server.container.logs(tail=30).decode(errors="replace")
                )
            )
        try:
            if server.psql("SELECT 1", timeout=10) == "1":
                return
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        time.sleep(0.3)
    raise RuntimeError(
        f"postgres on {server.host}:{server.port} not ready within {timeout_s:.0f} s "
        f"({error}); log:\n" + server.container.logs(tail=30).decode(errors="replace")
    )
