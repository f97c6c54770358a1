"""`napdms-ops up` runs the Pulumi CLI with the project's defaults, or says what is missing."""

import re
import socket
import stat
import subprocess
import sys
import time

import pytest

from napdms_ops.deploy import (
    MANUAL_INSTALL,
    PULUMI_CLI_VERSION,
    DeployError,
    check_docker,
    deploy_environment,
    pinned_cli_root,
    up,
    up_commands,
)
from tests.program import ROOT


def _fake_tool(directory, name: str, exit_code: int = 0):
    """An executable `name` in `directory` that appends its arguments to directory/calls.log."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{directory}/calls.log"\nexit {exit_code}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _calls(directory) -> list[str]:
    log = directory / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _run_up(tmp_path, *args, tools=("pulumi", "docker"), extra_env=None):
    for tool in tools:
        _fake_tool(tmp_path, tool)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path), **(extra_env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "up", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return result, _calls(tmp_path)


@pytest.fixture
def no_pulumi_on_path(tmp_path, monkeypatch):
    """This process with only a fake `docker` on PATH and HOME in tmp_path (so the pinned CLI's
    root is there); returns the directory of the fake tools."""
    tools = tmp_path / "tools"
    _fake_tool(tools, "docker")
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path))
    return tools


def _closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_dev_up_selects_the_stack_then_runs_pulumi_up(tmp_path):
    result, calls = _run_up(tmp_path, "--stack", "dev", "--yes")
    assert result.returncode == 0, result.stderr
    assert calls == [
        "docker info",
        "pulumi stack select --create dev",
        "pulumi up --stack dev --yes",
        "pulumi stack history --stack dev --json --page-size 1",
    ]


def test_without_pulumi_on_path_up_runs_the_cli_it_installed(no_pulumi_on_path):
    def install(root, version):
        _fake_tool(root / "bin", "pulumi")

    assert up("dev", yes=True, install=install) == 0
    assert _calls(pinned_cli_root() / "bin") == [
        "pulumi stack select --create dev",
        "pulumi up --stack dev --yes",
        "pulumi stack history --stack dev --json --page-size 1",
    ]


def test_an_installed_pinned_cli_is_reused_without_installing_again(no_pulumi_on_path):
    installs = []
    _fake_tool(pinned_cli_root() / "bin", "pulumi")

    assert up("dev", yes=True, install=lambda root, version: installs.append(version)) == 0
    assert installs == [] and len(_calls(pinned_cli_root() / "bin")) == 3


def test_an_unreachable_download_host_stops_up_quickly_with_the_manual_install(tmp_path):
    # The download goes through this proxy, and nothing listens there: the host is unreachable.
    proxy = f"http://127.0.0.1:{_closed_loopback_port()}"
    started = time.monotonic()
    result, _ = _run_up(tmp_path, tools=("docker",), extra_env={"HTTPS_PROXY": proxy})
    elapsed = time.monotonic() - started
    assert result.returncode == 2 and elapsed < 10
    assert re.fullmatch(
        rf"napdms-ops up: [^\n]*`{re.escape(MANUAL_INSTALL)}`[^\n]*\n", result.stderr
    )


def test_the_cli_pin_is_the_sdk_pin_of_requirements():
    assert f"pulumi=={PULUMI_CLI_VERSION}" in (ROOT / "requirements.txt").read_text().splitlines()


def test_prod_without_a_passphrase_stops_before_calling_pulumi(tmp_path):
    result, calls = _run_up(tmp_path, "--stack", "prod")
    assert result.returncode == 2 and calls == []
    assert "prod: PULUMI_CONFIG_PASSPHRASE is not set" in result.stderr


def test_outside_dev_a_missing_docker_cli_is_one_line_before_pulumi(tmp_path, monkeypatch):
    # The PIDs limits are `docker update --pids-limit` commands run against each host.
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeployError, match=r"^prod: the docker CLI is not on PATH[^\n]*$"):
        check_docker("prod")
    _fake_tool(tmp_path, "docker")
    check_docker("prod")
    assert _calls(tmp_path) == [], "only dev asks its daemon"


def test_local_file_backend_is_the_default_and_an_explicit_one_wins():
    assert deploy_environment("dev", {})["PULUMI_BACKEND_URL"] == "file://~"
    explicit = deploy_environment("dev", {"PULUMI_BACKEND_URL": "s3://state"})
    assert explicit["PULUMI_BACKEND_URL"] == "s3://state"


def test_only_dev_gets_an_empty_passphrase():
    assert deploy_environment("dev", {})["PULUMI_CONFIG_PASSPHRASE"] == ""
    with pytest.raises(DeployError):
        deploy_environment("staging", {})
    with_passphrase = deploy_environment("prod", {"PULUMI_CONFIG_PASSPHRASE": "x"})
    assert with_passphrase["PULUMI_CONFIG_PASSPHRASE"] == "x"


def test_up_without_yes_leaves_the_confirmation_to_pulumi():
    assert up_commands("staging", yes=False)[-1] == ["pulumi", "up", "--stack", "staging"]
