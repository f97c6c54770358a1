"""`napdms-ops audit-log verify` exits 0 intact, 1 tampered, 2 on errors; `up`, `restore` and
`drill` leave a record on the trail."""

import json
import stat

import pytest
from typer.testing import CliRunner

from napdms_ops import backups
from napdms_ops.cli import app
from napdms_ops.deploy import up
from napdms_ops.trail import record, records
from napdms_ops.trail.store import trail_path


@pytest.fixture
def environ(tmp_path, monkeypatch):
    """This process with its state dir (and so dev's mirror) in tmp_path."""
    monkeypatch.setenv("NAPDMS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NAPDMS_OPERATOR", "ops")
    monkeypatch.delenv("NAPDMS_AUDIT_MIRROR", raising=False)
    return {"NAPDMS_STATE_DIR": str(tmp_path / "state"), "NAPDMS_OPERATOR": "ops"}


def _verify(*args):
    return CliRunner().invoke(app, ["audit-log", "verify", "--stack", "dev", "--json", *args])


def _kinds(result) -> list[str]:
    return [problem["kind"] for problem in json.loads(result.stdout)["problems"]]


def _trail_lines(tmp_path) -> list[bytes]:
    return trail_path(tmp_path / "state", "dev").read_bytes().splitlines(keepends=True)


def test_an_intact_trail_and_mirror_exit_0(environ):
    for command in ("up", "deploy"):
        record("dev", command, "ok", environ=environ)
    result = _verify()
    assert (result.exit_code, _kinds(result)) == (0, [])
    assert json.loads(result.stdout)["mirror_records"] == 2


def test_an_edited_record_exits_1(environ, tmp_path):
    for command in ("up", "deploy"):
        record("dev", command, "ok", environ=environ)
    lines = _trail_lines(tmp_path)
    lines[0] = lines[0].replace(b'"result":"ok"', b'"result":"failed"')
    trail_path(tmp_path / "state", "dev").write_bytes(b"".join(lines))
    result = _verify()
    assert (result.exit_code, _kinds(result)) == (1, ["edited", "diverged"])


def test_a_truncated_tail_exits_1_against_the_mirror(environ, tmp_path):
    for command in ("up", "deploy", "rollback"):
        record("dev", command, "ok", environ=environ)
    trail_path(tmp_path / "state", "dev").write_bytes(b"".join(_trail_lines(tmp_path)[:1]))
    result = _verify()
    assert (result.exit_code, _kinds(result)) == (1, ["truncated"])


def test_a_deleted_trail_exits_1_against_the_mirror(environ, tmp_path):
    for command in ("up", "deploy"):
        record("dev", command, "ok", environ=environ)
    trail_path(tmp_path / "state", "dev").unlink()
    result = _verify()
    assert (result.exit_code, _kinds(result)) == (1, ["truncated"])
    assert json.loads(result.stdout)["problems"][0]["detail"].startswith("seq 1-2:")


def test_a_named_mirror_is_compared_instead(environ, tmp_path):
    record("dev", "up", "ok", environ=environ)
    (tmp_path / "elsewhere").mkdir()
    result = _verify("--mirror", str(tmp_path / "elsewhere"))
    assert (result.exit_code, _kinds(result)) == (0, ["unmirrored"])


def test_a_mirror_that_cannot_be_read_exits_2(environ, tmp_path):
    record("dev", "up", "ok", environ=environ)
    (tmp_path / "broken" / "dev.jsonl").mkdir(parents=True)
    result = _verify("--mirror", str(tmp_path / "broken"))
    assert result.exit_code == 2
    assert json.loads(result.stdout)["mirror_error"]


def test_a_name_that_is_no_stack_exits_2_with_one_line(environ):
    result = CliRunner().invoke(app, ["audit-log", "verify", "--stack", "../x"])
    assert result.exit_code == 2
    assert result.stderr.startswith("napdms-ops audit-log verify: ../x: ")


def _fake_tool(directory, name, exit_code=0):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("exit_code", "result"), [(0, "ok"), (3, "failed")])
def test_up_records_its_result_by_the_pulumi_exit_status(
    exit_code, result, environ, tmp_path, monkeypatch
):
    _fake_tool(tmp_path / "tools", "docker")
    _fake_tool(tmp_path / "tools", "pulumi", exit_code)
    monkeypatch.setenv("PATH", f"{tmp_path / 'tools'}:/usr/bin:/bin")
    assert up("dev", yes=True) == exit_code
    [made] = records("dev", environ)
    assert (made.command, made.result, made.changes["exit_status"]) == ("up", result, exit_code)


def test_up_records_what_the_update_changed_from_the_stack_history(environ, tmp_path, monkeypatch):
    tools = tmp_path / "tools"
    _fake_tool(tools, "docker")
    history = json.dumps([{"kind": "update", "resourceChanges": {"create": 2, "same": 210}}])
    (tools / "pulumi").write_text(
        f"#!/bin/sh\nif [ \"$2\" = history ]; then echo '{history}'; fi\nexit 0\n"
    )
    (tools / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    assert up("dev", yes=True) == 0
    [made] = records("dev", environ)
    assert made.changes["resources"] == {"create": 2, "same": 210}


def test_an_unreadable_history_leaves_the_changes_unknown_not_invented(
    environ, tmp_path, monkeypatch
):
    _fake_tool(tmp_path / "tools", "docker")
    _fake_tool(tmp_path / "tools", "pulumi")
    monkeypatch.setenv("PATH", f"{tmp_path / 'tools'}:/usr/bin:/bin")
    assert up("dev", yes=True) == 0
    [made] = records("dev", environ)
    assert made.changes["resources"] is None


def _agent(stack):
    return backups.Agent(stack=stack, client=None, container=None)


def test_a_drill_is_recorded_with_its_outcome(environ, monkeypatch):
    job = backups.JobResult(
        exit_code=1, result={"rto_s": 912.5, "tables": [1]}, error="over RTO", volumes=()
    )
    monkeypatch.setattr(backups, "find_agent", _agent)
    monkeypatch.setattr(backups, "drill", lambda agent, snapshot, data_bytes: job)
    result = CliRunner().invoke(app, ["drill", "--stack", "dev", "--snapshot", "r1"])
    assert result.exit_code == 1
    [made] = records("dev", environ)
    assert (made.command, made.result, made.reason) == ("drill", "failed", "over RTO")
    assert made.changes == {
        "snapshot": "r1",
        "data_bytes": None,
        "volumes": [],
        "result": {"rto_s": 912.5},
    }


def test_a_restore_into_another_stack_is_recorded_on_that_stack(environ, monkeypatch):
    job = backups.JobResult(exit_code=0, result={}, error="", volumes=("staging-pg",))
    monkeypatch.setattr(backups, "find_agent", _agent)
    monkeypatch.setattr(backups, "restore", lambda *args: job)
    result = CliRunner().invoke(
        app, ["restore", "--stack", "prod", "--target", "staging", "--service", "postgres"]
    )
    assert result.exit_code == 0, result.output
    assert records("prod", environ) == []
    [made] = records("staging", environ)
    assert (made.command, made.result) == ("restore", "ok")
    assert made.changes["source"] == "prod" and made.changes["volumes"] == ["staging-pg"]


def test_a_restore_that_raises_is_recorded_as_failed(environ, monkeypatch):
    def refuse(*args):
        raise backups.BackupCommandError("stack dev: volumes exist already")

    monkeypatch.setattr(backups, "find_agent", _agent)
    monkeypatch.setattr(backups, "restore", refuse)
    result = CliRunner().invoke(app, ["restore", "--stack", "dev"])
    assert result.exit_code == 2
    [made] = records("dev", environ)
    assert (made.result, made.reason) == ("failed", "stack dev: volumes exist already")


def _policy_file(tmp_path, monkeypatch, before: dict | None, after: dict):
    from napdms_ops import policy_config

    path = tmp_path / "dev.json"
    if before is not None:
        path.write_text(json.dumps(before, indent=2) + "\n")
    monkeypatch.setattr(policy_config, "path_of", lambda stack: path)
    text = json.dumps(after, indent=2) + "\n"
    monkeypatch.setattr(policy_config, "generated", lambda stack: text)
    return path


def test_an_exemption_written_is_recorded_with_what_it_grants_and_revokes(
    environ, tmp_path, monkeypatch
):
    before = {"run-as-root": {"enforcementLevel": "mandatory", "exempt": {"a-init": "chown"}}}
    after = {
        "run-as-root": {"enforcementLevel": "mandatory", "exempt": {"b-init": "chown"}},
        "no-log-rotation": "advisory",
    }
    _policy_file(tmp_path, monkeypatch, before, after)
    result = CliRunner().invoke(app, ["policy-config", "--stack", "dev", "--write"])
    assert result.exit_code == 0, result.output
    [written] = [r for r in records("dev", environ) if r.command == "exemption"]
    assert written.changes == {
        "granted": ["b-init: run-as-root"],
        "revoked": ["a-init: run-as-root"],
        "levels": ["no-log-rotation: none -> advisory"],
    }


def test_a_policy_config_already_up_to_date_leaves_no_record(environ, tmp_path, monkeypatch):
    same = {"run-as-root": "mandatory"}
    _policy_file(tmp_path, monkeypatch, same, same)
    result = CliRunner().invoke(app, ["policy-config", "--stack", "dev", "--write"])
    assert result.exit_code == 0, result.output
    assert records("dev", environ) == []
