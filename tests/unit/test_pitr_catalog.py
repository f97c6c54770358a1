"""Point-in-time recovery of PostgreSQL as the catalog wires it: the server runs with the
program's own pg_hba (replication by the superuser only, passwords over TCP) and a WAL level
fit for archiving, and the backup agent spools the WAL on an excluded volume of its own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from components.catalog import CATALOG, backup_agent
from components.catalog.backup_agent import PLAN_FILE, WAL_DIR
from components.model.plan import BackupPlan
from components.model.spec import BackupHook
from components.settings import read_stack
from tests.program import labels_of

POSTGRES = "postgres"
AGENT = "backup-agent"


def _service(program, name):
    [container] = [c for c in program.services() if labels_of(c)["napdms.service"] == name]
    return container


def _uploads(program, name) -> dict[str, str]:
    """A service's secret and config files, as its init container writes them."""
    [init] = [
        c
        for c in program.containers()
        if labels_of(c).get("napdms.role") == "init" and labels_of(c)["napdms.service"] == name
    ]
    return {u["file"]: u["content"] for u in init.plain("uploads")}


def _settings(command: list[str]) -> dict[str, str]:
    """The `-c name=value` settings of a postgres command line."""
    return dict(command[i + 1].split("=", 1) for i, arg in enumerate(command[:-1]) if arg == "-c")


def _hba_file(program) -> str:
    return _settings(_service(program, POSTGRES).plain("command"))["hba_file"]


def _hba_rules(program) -> list[list[str]]:
    """The generated pg_hba.conf's rules, one list of fields per line, comments dropped."""
    text = _uploads(program, POSTGRES)[_hba_file(program)]
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return [fields for fields in lines if fields]


def _plan(program) -> BackupPlan:
    return BackupPlan.model_validate_json(_uploads(program, AGENT)[PLAN_FILE])


def _mounts(container) -> dict[str, str]:
    return {
        m["containerPath"]: m["volumeName"] for m in container.plain("volumes") if "volumeName" in m
    }


def test_postgres_reads_the_generated_pg_hba_in_every_stack(program):
    container = _service(program, POSTGRES)
    hba_file = _hba_file(program)
    assert hba_file == "/docker-entrypoint-initdb.d/pg_hba.conf", (
        f"{container.name}: hba_file is {hba_file}"
    )
    assert hba_file in _uploads(program, POSTGRES), (
        f"{container.name}: {hba_file} is not among its generated files"
    )


def test_postgres_command_starts_the_server_with_settings_only(program):
    command = _service(program, POSTGRES).plain("command")
    assert command[0] == "postgres" and len(command) % 2 == 1, (
        f"{program.stack}-postgres: the entrypoint initialises only for `postgres ...`: {command}"
    )
    assert all(arg == "-c" for arg in command[1::2]), f"{program.stack}-postgres: {command}"


def test_postgres_keeps_wal_for_a_replication_slot_within_a_bound(program):
    settings = _settings(_service(program, POSTGRES).plain("command"))
    wanted = {"wal_level": "replica", "max_wal_senders": "10", "max_slot_wal_keep_size": "8GB"}
    assert {key: settings.get(key) for key in wanted} == wanted, (
        f"{program.stack}-postgres: WAL settings {settings}"
    )


def test_only_the_superuser_may_replicate_and_only_with_a_password(program):
    replication = [rule for rule in _hba_rules(program) if "replication" in rule[1].split(",")]
    assert replication == [["host", "replication", "postgres", "all", "scram-sha-256"]], (
        f"{program.stack}-postgres pg_hba.conf: replication rules {replication}"
    )


def test_no_tcp_connection_is_trusted(program):
    trusted = [rule for rule in _hba_rules(program) if rule[0] != "local" and "trust" in rule]
    assert not trusted, f"{program.stack}-postgres pg_hba.conf trusts {trusted}"


def test_every_tcp_client_authenticates_with_scram(program):
    tcp = [rule for rule in _hba_rules(program) if rule[0] != "local"]
    assert tcp and all(rule[-1] == "scram-sha-256" for rule in tcp), (
        f"{program.stack}-postgres pg_hba.conf: {tcp}"
    )


def test_only_the_containers_own_socket_is_trusted(program):
    local = [rule for rule in _hba_rules(program) if rule[0] == "local"]
    assert local == [["local", "all", "all", "trust"]], (
        f"{program.stack}-postgres pg_hba.conf: socket rules {local}"
    )


def test_health_check_needs_no_trust_rule(program):
    # pg_isready counts an authentication request as "accepting connections"; it must still
    # reach the server over TCP, which the scram rule for every address covers.
    test = _service(program, POSTGRES).plain("healthcheck")["tests"]
    assert test[:3] == ["CMD", "pg_isready", "-h"], f"{program.stack}-postgres health check {test}"
    assert ["host", "all", "all", "all", "scram-sha-256"] in _hba_rules(program), (
        f"{program.stack}-postgres pg_hba.conf: no rule for the health check's TCP probe"
    )


def test_agent_plan_archives_the_postgres_wal_into_its_spool(program):
    [source] = [s for s in _plan(program).sources if s.service == POSTGRES]
    assert source.wal is not None, f"{program.stack}-backup-agent plan.json: postgres has no wal"
    assert source.wal.spool_dir == "/wal/postgres", (
        f"{program.stack}-backup-agent plan.json: postgres spools into {source.wal.spool_dir}"
    )


def test_no_other_source_archives_a_wal(program):
    archived = [s.service for s in _plan(program).sources if getattr(s, "wal", None)]
    assert archived == [POSTGRES], f"{program.stack}-backup-agent plan.json: wal for {archived}"


def test_agent_spools_the_wal_on_a_volume_excluded_from_backups(program):
    agent = _service(program, AGENT)
    mounts = _mounts(agent)
    assert WAL_DIR in mounts, f"{agent.name} mounts no volume at {WAL_DIR}"
    [volume] = [
        v
        for v in program.of_type("docker:index/volume:Volume")
        if v.plain("name") == mounts[WAL_DIR]
    ]
    labels = labels_of(volume)
    assert volume.plain("name").endswith("-backup-agent-wal"), f"{volume.name}: named for wal"
    assert labels["napdms.backup"] == "exclude" and labels["napdms.backup.reason"], (
        f"{volume.name}: backup policy {labels.get('napdms.backup')}"
    )


def test_agent_has_no_wal_volume_when_no_hook_archives_a_wal():
    stack = read_stack("dev")
    services = {
        name: spec.model_copy(
            update={"backup_hook": spec.backup_hook.model_copy(update={"wal": False})}
        )
        if spec.backup_hook
        else spec
        for name, spec in stack.services.items()
    }
    agent = backup_agent.for_stack(backup_agent.SPEC, stack.settings.backup, services)
    assert "wal" not in {v.name for v in agent.volumes}, "dev-backup-agent: wal volume without wal"


def test_catalog_postgres_hook_archives_the_wal():
    assert CATALOG[POSTGRES].backup_hook.wal, "postgres: backup_hook.wal is off"


def test_wal_defaults_to_off():
    hook = BackupHook(kind="postgresql", port=5432, user="postgres")
    assert hook.wal is False, "BackupHook: wal is on by default"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [("redis", {"port": 6379}), ("mongodb", {"port": 27017, "user": "root"})],
)
def test_wal_on_another_kind_of_hook_is_refused_naming_wal(kind, fields):
    with pytest.raises(ValidationError) as raised:
        BackupHook(kind=kind, password_secret=f"{kind}-password", wal=True, **fields)
    [error] = raised.value.errors()
    assert "wal" in error["msg"] and kind in error["msg"], f"BackupHook({kind}): {error['msg']}"
    assert "\n" not in error["msg"], f"BackupHook({kind}): message is not one line"
