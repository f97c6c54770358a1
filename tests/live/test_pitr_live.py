"""Point-in-time recovery of PostgreSQL, live: the dev stack's postgres and backup agent replayed
exactly as the program declares them (the server's pg_hba and WAL settings, the agent's networks,
volumes and WAL spool), the agent's own loop streaming and shipping the WAL. A commit reaches the
repository within the ship interval; `restore --to` recovers exactly the rows committed before the
moment into a fresh volume the postgres image starts as it is; the drill recovers to a restore
point and its table sums match."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import time

import pytest

from napdms_ops import backups
from tests.live.engine import ensure_engine
from tests.live.replay import replay
from tests.program import OPERATOR_CONFIG, run_program, stack_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the live harness needs root")

STACK = "dev"
DATABASE = "napdms"
SHIP_BOUND_S = 60 + 45
"""The plan's ship interval (60 s), plus a shipment and a slow CI machine."""


ONLY_POSTGRES = """
import json
plan = json.load(open('/etc/napdms-backup/plan.json'))
plan['sources'] = [s for s in plan['sources'] if s['service'] == 'postgres']
open('/tmp/postgres-plan.json', 'w').write(json.dumps(plan))
"""


def _psql(container, sql: str, database: str = DATABASE) -> str:
    code, output = container.exec_run(
        [
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ],
        user="999",
    )
    assert code == 0, f"psql {sql!r}: {output.decode()}"
    return output.decode().strip()


def agent_postgres(stack):
    """The replayed postgres container of the `stack` fixture."""
    return stack[1]


def _wal_state(agent) -> dict:
    code, output = agent.exec_run(["cat", "/state/wal-postgres.json"])
    return json.loads(output) if code == 0 else {}


def _shipped_after(agent, moment: float, bound_s: float) -> float:
    """Seconds until the agent's WAL state says a shipment that began after `moment` finished."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        if (_wal_state(agent).get("last_ship") or 0) > moment:
            return time.time() - moment
        time.sleep(1)
    raise AssertionError(f"no WAL shipment began within {bound_s:.0f} s after the commit")


def _agent_python(agent, code: str) -> str:
    exit_code, output = agent.exec_run(["python3", "-c", code])
    assert exit_code == 0, output.decode()
    return output.decode()


@pytest.fixture(scope="module")
def stack():
    """(replay, postgres container, agent container, found agent) with a table of 1000 rows and
    one run (base backup and dump) in the agent's repository."""
    client = ensure_engine()
    config = {**stack_config(STACK), **OPERATOR_CONFIG}
    done = replay(
        run_program(STACK, config, tuple(OPERATOR_CONFIG)), ["postgres", "backup-agent"], client
    )
    try:
        postgres = next(c for n, c in done.containers.items() if n.endswith("-postgres-1"))
        agent = done.containers["local-backup-agent-1"]
        _psql(postgres, "CREATE TABLE letters (id int PRIMARY KEY, body text)")
        _psql(
            postgres, "INSERT INTO letters SELECT g, md5(g::text) FROM generate_series(1, 1000) g"
        )
        # Only postgres of the plan's sources runs here: the run backs up that one.
        _agent_python(agent, ONLY_POSTGRES)
        for command in ("init", "run"):
            code, output = agent.exec_run(
                ["python3", "-m", "napdms_ops.backup", command, "--plan", "/tmp/postgres-plan.json"]
            )
            assert code == 0, f"{command}: {output.decode()[-2000:]}"
        yield done, postgres, agent, backups.find_agent(STACK, client)
    finally:
        done.remove()


def test_a_run_records_a_base_backup_and_the_agent_streams_the_wal(stack):
    _, _, agent, _ = stack
    listed = json.loads(
        agent.exec_run(["python3", "-m", "napdms_ops.backup", "list"]).output.decode()
    )
    assert listed["runs"] and listed["runs"][-1]["services"]["postgres"] == "ok", listed
    deadline = time.monotonic() + 60
    while not _wal_state(agent).get("receiving"):
        assert time.monotonic() < deadline, f"pg_receivewal is not running: {_wal_state(agent)}"
        time.sleep(1)
    _psql(agent_postgres(stack), "SELECT pg_switch_wal()", "postgres")
    deadline = time.monotonic() + 30
    while True:
        output = agent.exec_run(["ls", "/wal/postgres"]).output.decode().split()
        if any(len(name) == 24 for name in output):
            break
        assert time.monotonic() < deadline, f"no complete segment in the spool: {output}"
        time.sleep(1)


def test_a_commit_reaches_the_repository_within_the_ship_interval(stack):
    _, postgres, agent, _ = stack
    _psql(postgres, "INSERT INTO letters VALUES (5000, 'rpo')")
    committed = time.time()
    assert _shipped_after(agent, committed, SHIP_BOUND_S) <= SHIP_BOUND_S


def _recovered_rows(stack, moment: float) -> str:
    """`restore --to moment` through a job, then the postgres image started on the fresh volume
    as it is: `count|max(id)` of the letters it holds."""
    done, postgres, _, found = stack
    label = f"pitr{secrets.token_hex(3)}"
    iso = dt.datetime.fromtimestamp(moment, dt.UTC).isoformat()
    job = backups.restore_to(found, iso, "postgres", label=label)
    client = done.client
    try:
        assert job.exit_code == 0, job.error
        restored = client.containers.run(
            postgres.image.id,
            ["postgres", "-c", "listen_addresses="],
            detach=True,
            user="999:999",
            volumes=[f"{job.volumes[0]}:/var/lib/postgresql/data"],
            name=f"napdms-live-pitr-{label}",
        )
        try:
            deadline = time.monotonic() + 60
            while restored.exec_run(["pg_isready", "-q"]).exit_code != 0:
                assert time.monotonic() < deadline, restored.logs().decode()[-2000:]
                time.sleep(0.5)
            return _psql(restored, "SELECT count(*), max(id) FROM letters")
        finally:
            restored.remove(force=True)
    finally:
        for name in job.volumes:
            client.volumes.get(name).remove(force=True)


def test_restore_to_a_moment_recovers_exactly_what_was_committed_before_it(stack):
    _, postgres, agent, _ = stack
    _psql(postgres, "INSERT INTO letters VALUES (6000, 'before the moment')")
    time.sleep(1.5)
    moment = time.time()
    time.sleep(1.5)
    _psql(postgres, "INSERT INTO letters VALUES (6001, 'after the moment')")
    expected = int(_psql(postgres, "SELECT count(*) FROM letters WHERE id <= 6000"))
    time.sleep(1.5)
    # No commit follows this one: the archive's end is the moment.
    quiet = time.time()
    _shipped_after(agent, quiet, SHIP_BOUND_S)
    rows = _recovered_rows(stack, moment)
    assert rows == f"{expected}|6000", f"recovered (count|max id) {rows}, not the moment"
    rows = _recovered_rows(stack, quiet)
    assert rows == f"{expected + 1}|6001", f"recovered (count|max id) {rows} at a quiet moment"


def test_the_drill_recovers_to_a_restore_point_and_its_sums_match(stack):
    _, postgres, agent, found = stack
    _agent_python(
        agent,
        "from components.model.plan import load_plan, PLAN_FILE\n"
        "from napdms_ops.backup import wal\n"
        "from napdms_ops.backup.run import repository\n"
        "plan = load_plan(PLAN_FILE)\n"
        "source = next(s for s in plan.sources if s.service == 'postgres')\n"
        "print(wal.set_marker(plan, source, repository(plan)).name)\n",
    )
    _psql(postgres, "UPDATE letters SET body = 'changed after the restore point' WHERE id < 100")
    _shipped_after(agent, time.time(), SHIP_BOUND_S)
    job = backups.drill(found, "latest", None)
    assert job.exit_code == 0, job.error or job.result
    assert job.result["problems"] == [], job.result["problems"]
    assert [p["service"] for p in job.result["pitr"]] == ["postgres"], job.result


def test_restore_to_refuses_a_service_whose_wal_is_not_archived(stack):
    _, _, _, found = stack
    with pytest.raises(backups.BackupCommandError, match="archives \\(postgres\\), not redis"):
        backups.restore_to(found, "2026-01-01T00:00", "redis")


def test_archiving_goes_on_after_a_recovered_cluster_is_put_in_place(stack):
    """The operator's way back from a bad change: recover to a moment, swap the volume in. The
    agent's spool is then ahead of the server (a new timeline that forks earlier); it starts
    over from the server's position on the new timeline. A moment on it is refused, with the
    fix, until a base backup on it exists; then it recovers."""
    done, postgres, agent, found = stack
    client = done.client
    _psql(postgres, "INSERT INTO letters VALUES (7000, 'lost by going back')")
    moment = time.time()
    time.sleep(1.5)
    _shipped_after(agent, moment, SHIP_BOUND_S)
    label = f"swap{secrets.token_hex(3)}"
    job = backups.restore_to(
        found, dt.datetime.fromtimestamp(moment - 1, dt.UTC).isoformat(), "postgres", label=label
    )
    assert job.exit_code == 0, job.error
    live = next(m["Name"] for m in postgres.attrs["Mounts"] if m["Destination"].endswith("/data"))
    try:
        postgres.stop(timeout=60)
        client.containers.run(
            postgres.image.id,
            ["sh", "-c", "rm -rf /live/* && cp -a /restored/. /live/"],
            entrypoint=[],
            remove=True,
            user="0",
            volumes=[f"{job.volumes[0]}:/restored:ro", f"{live}:/live"],
        )
    finally:
        postgres.start()
        client.volumes.get(job.volumes[0]).remove(force=True)
    deadline = time.monotonic() + 90
    while postgres.exec_run(["pg_isready", "-q"]).exit_code != 0:
        assert time.monotonic() < deadline, postgres.logs().decode()[-2000:]
        time.sleep(0.5)
    assert _psql(postgres, "SELECT count(*) FROM letters WHERE id = 7000") == "0"
    _psql(postgres, "INSERT INTO letters VALUES (8000, 'after the way back')")
    committed = time.time()
    time.sleep(1.5)
    deadline = time.monotonic() + 2 * SHIP_BOUND_S
    while not (_wal_state(agent).get("newest_segment") or "").startswith("00000002"):
        assert time.monotonic() < deadline, f"archive not on the new timeline: {_wal_state(agent)}"
        time.sleep(2)
    _shipped_after(agent, time.time(), SHIP_BOUND_S)
    refused = backups.restore_to(
        found, dt.datetime.fromtimestamp(committed + 1, dt.UTC).isoformat(), "postgres"
    )
    assert refused.exit_code != 0 and "went on on timeline 2" in refused.error, refused.error
    code, output = agent.exec_run(
        ["python3", "-m", "napdms_ops.backup", "run", "--plan", "/tmp/postgres-plan.json"]
    )
    assert code == 0, output.decode()[-2000:]
    _psql(postgres, "INSERT INTO letters VALUES (8001, 'after the new base')")
    expected = _psql(postgres, "SELECT count(*), max(id) FROM letters")
    moment = time.time()
    time.sleep(1.5)
    _shipped_after(agent, moment, SHIP_BOUND_S)
    rows = _recovered_rows(stack, moment)
    assert rows == expected, f"recovered (count|max id) {rows}, live {expected}: not the moment"
