"""`napdms-ops audit` against the real engine: containers made here, hardened or flawed on
purpose, are judged by the shared rules the way an operator would see them.

Other tests leave their own containers on this daemon, so every assertion looks only at the
containers this module created (unique names per run); they are removed afterwards.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest
from docker.errors import NotFound
from docker.types import LogConfig
from typer.testing import CliRunner

from napdms_ops.audit import audit
from napdms_ops.cli import app
from tests.live.engine import DEFAULT_HOST, ensure_engine
from tests.live.standins import standin_image
from tests.program import ROOT

RUN = uuid.uuid4().hex[:8]
PREFIX = f"napdms-audit-{RUN}"
NS = 1_000_000_000
FLAWED_RULES = {
    "run-as-root",
    "privileged",
    "capabilities",
    "no-new-privileges",
    "no-memory-limit",
    "no-cpu-limit",
    "no-pids-limit",
    "writable-root",
    "docker-socket",
    "no-health-check",
    "no-restart-policy",
    "no-log-rotation",
    "image-not-pinned",
}
"""Everything wrong with the flawed container below, at prod levels (every rule mandatory)."""


def managed(stack: str, service: str) -> dict:
    return {
        "napdms.managed-by": "pulumi",
        "napdms.stack": stack,
        "napdms.service": service,
        "napdms.test-run": RUN,
    }


@pytest.fixture(scope="module")
def client():
    return ensure_engine()


@pytest.fixture(scope="module")
def host(client):
    """The endpoint ensure_engine connected to."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


@pytest.fixture(scope="module")
def busybox(client):
    return standin_image("busybox", client)


@pytest.fixture(scope="module")
def made(client, busybox, host):
    """The module's containers, created and started once; removed at the end."""
    created = []

    def run(role, image=busybox, start=True, **options):
        container = client.containers.create(
            image, ["sleep", "3600"], name=f"{PREFIX}-{role}", **options
        )
        created.append(container)
        if start:
            container.start()
        return container.name

    socket = host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"
    try:
        names = {
            "hardened": run(
                "hardened",
                image=client.images.get(busybox).id,  # sha256:<id>, content-addressed like a digest
                user="1000:1000",
                cap_drop=["ALL"],
                read_only=True,
                security_opt=["no-new-privileges:true"],
                mem_limit="32m",
                memswap_limit="32m",
                nano_cpus=NS // 4,
                pids_limit=64,
                healthcheck={
                    "test": ["CMD", "true"],
                    "interval": NS,
                    "timeout": 5 * NS,
                    "retries": 3,
                },
                restart_policy={"Name": "unless-stopped"},
                log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
                labels=managed("prod", "hardened"),
            ),
            "flawed": run(
                "flawed",
                privileged=True,
                # This sandbox may not grant a privileged container every capability, so it stays
                # created, not started: the audit reads every state, and a stopped container that
                # `restart` or a reboot brings back is just as much a finding.
                start=False,
                volumes={socket: {"bind": "/var/run/docker.sock", "mode": "rw"}},
                labels=managed("prod", "flawed"),
            ),
            "unmanaged": run("unmanaged"),
            "exempt": run(
                "exempt",
                image=client.images.get(busybox).id,
                user="1000:1000",
                cap_drop=["ALL"],
                read_only=True,
                security_opt=["no-new-privileges:true"],
                mem_limit="32m",
                pids_limit=64,
                healthcheck={
                    "test": ["CMD", "true"],
                    "interval": NS,
                    "timeout": 5 * NS,
                    "retries": 3,
                },
                restart_policy={"Name": "unless-stopped"},
                log_config=LogConfig(type="json-file", config={"max-size": "10m"}),
                labels={
                    **managed("prod", "exempt"),
                    "napdms.exempt.no-cpu-limit": "batch job, niced; bounded by its timer",
                },
            ),
        }
        yield names
    finally:
        for container in created:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass


@pytest.fixture(scope="module")
def report(made, host):
    return audit(host, "prod")


def verdicts_of(report, name):
    return [v for v in report.verdicts if v.finding.subject == name]


def rules_of(report, name):
    return {v.finding.rule.id for v in verdicts_of(report, name)}


def test_every_container_of_the_daemon_is_read(report, client):
    assert report.containers == len(client.api.containers(all=True))
    assert report.networks >= 3  # bridge, host, none at least


def test_a_hardened_container_has_no_finding(report, made):
    assert verdicts_of(report, made["hardened"]) == []


def test_a_flawed_container_is_reported_with_exactly_its_problems(report, made):
    assert rules_of(report, made["flawed"]) == FLAWED_RULES
    assert all(v.mandatory for v in verdicts_of(report, made["flawed"]))
    socket = next(
        v for v in verdicts_of(report, made["flawed"]) if v.finding.rule.id == "docker-socket"
    )
    assert socket.finding.rule.cis == "5.32" and "/var/run/docker.sock" in socket.finding.problem


def test_an_unmanaged_container_is_reported_at_the_chosen_levels(made, report, host):
    unmanaged = {v.finding.rule.id: v.level for v in verdicts_of(report, made["unmanaged"])}
    assert unmanaged["unmanaged-container"] == "mandatory"  # prod, the default
    assert "unmanaged-container" not in rules_of(report, made["flawed"])
    # dev's config makes unmanaged-container advisory; labelled prod containers keep prod's levels.
    dev = audit(host, "dev")
    assert {v.finding.rule.id: v.level for v in verdicts_of(dev, made["unmanaged"])}[
        "unmanaged-container"
    ] == "advisory"
    assert {v.finding.rule.id: v.level for v in verdicts_of(dev, made["flawed"])}[
        "no-pids-limit"
    ] == "mandatory"


def test_an_exemption_label_turns_the_finding_advisory(report, made):
    (verdict,) = verdicts_of(report, made["exempt"])
    assert verdict.finding.rule.id == "no-cpu-limit"
    assert (verdict.level, verdict.finding.exempt_reason) == (
        "advisory",
        "batch job, niced; bounded by its timer",
    )


def test_cli_json_lists_the_findings_and_exits_1(made, host):
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "audit", "--host", host, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    flawed = [f for f in document["findings"] if f["subject"] == made["flawed"]]
    assert {f["rule"] for f in flawed} == FLAWED_RULES
    assert all(f["level"] == "mandatory" and f["fix"] and f["severity"] for f in flawed)
    assert {f["cis"] for f in flawed if f["rule"] == "privileged"} == {"5.5"}
    exempt = [f for f in document["findings"] if f["subject"] == made["exempt"]]
    assert exempt == [
        {
            **exempt[0],
            "rule": "no-cpu-limit",
            "level": "advisory",
            "exempt_reason": "batch job, niced; bounded by its timer",
        }
    ]
    assert document["containers"] >= 4 and document["mandatory"] >= len(FLAWED_RULES)


def test_cli_table_shows_mandatory_first_and_the_exemption(made, host):
    result = CliRunner().invoke(app, ["audit", "--host", host], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    # After the header, one block per finding (subject, level, CIS and problem on its first line,
    # the rule below), then the summary; blank lines between them.
    lines = [
        line.rstrip()  # rich pads every line, blank ones too, to the width
        for line in result.output.splitlines()
        if not line.startswith(("subject", "─"))
    ]
    blocks = [block.splitlines() for block in "\n".join(lines).split("\n\n") if block.strip()]
    *findings, summary = blocks
    rules = {(block[0].split()[0], block[1].split()[0]): block for block in findings}
    assert (made["flawed"], "docker-socket") in rules, f"no docker-socket finding: {sorted(rules)}"
    assert "5.32" in rules[made["flawed"], "docker-socket"][0].split(), "docker-socket's CIS id"
    exempt = rules[made["exempt"], "no-cpu-limit"]
    assert exempt[0].split()[1] == "exempt", f"{made['exempt']} level: {exempt[0]}"
    assert "exempt: batch job, niced; bounded by its timer" in " ".join(exempt), exempt
    levels = [block[0].split()[1] for block in findings]
    assert levels[0] == "mandatory", f"first finding is {levels[0]}: {findings[0]}"
    first_other = levels.index(next(level for level in levels if level != "mandatory"))
    assert "mandatory" not in levels[first_other:], f"mandatory after advisory: {levels}"
    assert " mandatory, " in " ".join(summary) and "containers" in summary[0], summary
