"""`napdms-ops up` runs the Pulumi CLI with the project's defaults, or says what is missing."""

import stat
import subprocess
import sys

import pytest

from napdms_ops.deploy import DeployError, deploy_environment, up_commands
from tests.program import ROOT


def _fake_tool(directory, name: str, exit_code: int = 0):
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{directory}/calls.log"\nexit {exit_code}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_up(tmp_path, *args, tools=("pulumi", "docker"), extra_env=None):
    for tool in tools:
        _fake_tool(tmp_path, tool)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path), **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "up", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    log = tmp_path / "calls.log"
    return result, log.read_text().splitlines() if log.exists() else []


def test_dev_up_selects_the_stack_then_runs_pulumi_up(tmp_path):
    result, calls = _run_up(tmp_path, "--stack", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    assert calls == ["docker info", "pulumi stack select --create dev", "pulumi up --stack dev --yes"]


def test_missing_pulumi_cli_is_reported_with_the_install_command(tmp_path):
    result, calls = _run_up(tmp_path, tools=("docker",))
    assert result.returncode == 2 and calls == []
    assert "curl -fsSL https://get.pulumi.com | sh" in result.stderr


def test_prod_without_a_passphrase_stops_before_calling_pulumi(tmp_path):
    result, calls = _run_up(tmp_path, "--stack", "prod")
    assert result.returncode == 2 and calls == []
    assert "prod: PULUMI_CONFIG_PASSPHRASE is not set" in result.stderr


def test_local_file_backend_is_the_default_and_an_explicit_one_wins():
    assert deploy_environment("dev", {})["PULUMI_BACKEND_URL"] == "file://~"
    assert deploy_environment("dev", {"PULUMI_BACKEND_URL": "s3://state"})["PULUMI_BACKEND_URL"] == "s3://state"


def test_only_dev_gets_an_empty_passphrase():
    assert deploy_environment("dev", {})["PULUMI_CONFIG_PASSPHRASE"] == ""
    with pytest.raises(DeployError):
        deploy_environment("staging", {})
    assert deploy_environment("prod", {"PULUMI_CONFIG_PASSPHRASE": "x"})["PULUMI_CONFIG_PASSPHRASE"] == "x"


def test_up_without_yes_leaves_the_confirmation_to_pulumi():
    assert up_commands("staging", yes=False)[-1] == ["pulumi", "up", "--stack", "staging"]
