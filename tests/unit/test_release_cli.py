"""The release commands: arguments, exit codes and what they print."""

import pytest
from typer.testing import CliRunner

from napdms_ops import cli
from tests.unit.release_fakes import World


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    world = World(tmp_path)
    monkeypatch.setattr(cli, "_deployer", lambda command, stack: world.deployer())
    return world


def _run(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def test_a_deploy_prints_what_happened_with_its_timings(world):
    result = _run("deploy", "napdms-backend", "--image", "1.0.1", "--stack", "dev")
    assert result.exit_code == 0
    assert "dev: napdms-backend: deploy 1.0.1: ok (blue-green, blue -> green)" in result.stdout
    assert "switch 0.00 s" in result.stdout


def test_a_refused_deploy_exits_1_with_the_reason(world):
    world.unhealthy["1.0.1"] = "connection refused"
    result = _run("deploy", "napdms-backend", "--image", "1.0.1", "--stack", "dev")
    assert result.exit_code == 1
    assert "napdms-ops deploy: dev: napdms-backend: deploy 1.0.1: refused:" in result.stderr


def test_a_bad_image_exits_2_naming_stack_and_service(world):
    result = _run("deploy", "gitea", "--image", "latest", "--stack", "dev")
    assert result.exit_code == 2
    assert result.stderr.startswith("napdms-ops deploy: dev: gitea: --image 'latest'")


def test_deploy_needs_a_service_and_image_or_all(world):
    result = _run("deploy", "gitea", "--stack", "dev")
    assert result.exit_code == 2
    assert "give a service and --image, or --all alone" in result.stderr


def test_a_rollback_without_history_exits_2_with_the_fix(world):
    result = _run("rollback", "gitea", "--stack", "dev")
    assert result.exit_code == 2
    assert "napdms-ops deploy gitea --image" in result.stderr


def test_unlock_names_whose_lock_it_removed(tmp_path, monkeypatch):
    from napdms_ops.release.lock import StackLock

    monkeypatch.setenv("NAPDMS_STATE_DIR", str(tmp_path))
    lock = StackLock(tmp_path, "dev", "alice", "napdms-ops deploy gitea", pid=1)
    lock.__enter__()
    result = _run("unlock", "--stack", "dev")
    assert (result.exit_code, "removed the lock of alice" in result.stdout) == (0, True)
