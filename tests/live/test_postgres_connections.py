"""The agent's reading of a PostgreSQL server's connections, against the real server: what the
`PostgresConnectionsNearLimit` alert divides, and `pg_up` when the login fails."""

from __future__ import annotations

import os
import subprocess
import time

from napdms_ops.backup import server_stats
from tests.live.postgres_data import start_postgres
from tests.live.test_backup_live import _postgres_source

HELD = 3


def test_open_connections_are_counted_against_max_connections(docker_client, agent_network):
    server = start_postgres(docker_client, agent_network)
    source = _postgres_source(server)
    env = {
        **os.environ,
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGUSER": server.user,
        "PGPASSWORD": server.password,
    }
    sessions = []
    try:
        before, limit = server_stats.connections(source)
        sessions = [
            subprocess.Popen(
                ["psql", "-X", "-q", "-d", "postgres", "-c", "SELECT pg_sleep(30)"], env=env
            )
            for _ in range(HELD)
        ]
        deadline = time.time() + 15
        during = before
        while during < before + HELD and time.time() < deadline:
            time.sleep(0.2)
            during, _ = server_stats.connections(source)
        assert during == before + HELD, f"{HELD} more sessions read as {during - before}"
        assert limit == 100, f"max_connections read as {limit}"
    finally:
        for session in sessions:
            session.kill()
        server.remove()


def test_a_wrong_password_reads_as_down(docker_client, agent_network, tmp_path):
    server = start_postgres(docker_client, agent_network)
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    try:
        assert server_stats.connections(_postgres_source(server, wrong)) is None
    finally:
        server.remove()
