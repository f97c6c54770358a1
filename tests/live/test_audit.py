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
from docker.types import DriverConfig, LogConfig, Mount
from typer.testing import CliRunner

from napdms_ops.audit import audit
from napdms_ops.cli import app
from policies.rules import levels
from tests.live.engine import DEFAULT_HOST, ensure_engine
from tests.live.standins import standin_image
from tests.program import ROOT

RUN = uuid.uuid4().hex[:8]
PREFIX = f"napdms-audit-{RUN}"
NS = 1_000_000_000
GRANTED_NAME = f"napdms-prod-cadvisor-{int(RUN, 16) % 10**9}"
GRANTED_REASON = levels.load("prod").grants["napdms-prod-cadvisor"]["run-as-root"]
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
BYPASS_RULES = {
    "privileged-group",
    "dangerous-capability",
    "unconfined-profile",
    "memory-swap",
    "exec-tmpfs",
    "port-all-interfaces",
    "runtime-state-mount",
    "host-mount",
    "bind-volume",
    "host-devices",
    "container-runtime",
    "host-cgroupns",
}
"""Everything wrong with the bypass container below: each a way around the obvious rules that
the engine accepts (issue 11), on an otherwise hardened container."""
JOINED_RULES = {"shared-namespace", "volumes-from"}
"""The joined container: another container's namespaces and mounts."""
BYPASS_PORT = 40_000 + int(RUN, 16) % 20_000


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

    def run(role, image=busybox, start=True, name=None, **options):
        container = client.containers.create(
            image, ["sleep", "3600"], name=name or f"{PREFIX}-{role}", **options
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
                labels=managed("prod", "hardened"),
                **HARDENED_OPTIONS,
            ),
            "flawed": run(
                "flawed",
                privileged=True,
                # This sandbox may not grant a privileged container every capability, so it stays
                # created, not started: the audit reads every state, and a stopped container that
                # `restart` or a reboot brings back is just as much a finding.
                start=False,
                volumes={socket: {"bind": "/var/run/docker.sock", "mode": "rw"}},
                cgroupns="private",
                labels=managed("prod", "flawed"),
            ),
            "unmanaged": run("unmanaged"),
            # Named as a replica of prod's cAdvisor, which prod.json grants run-as-root.
            "exempt": run(
                "exempt",
                name=GRANTED_NAME,
                image=client.images.get(busybox).id,
                labels={
                    **managed("prod", "exempt"),
                    "napdms.exempt.run-as-root": "records prod's grant",
                },
                **{**HARDENED_OPTIONS, "user": "0"},
            ),
        }
        names["bypass"] = bypass(client, client.images.get(busybox).id, created)
        names["joined"] = run(
            "joined",
            image=client.images.get(busybox).id,
            start=False,
            **HARDENED_OPTIONS,
            network_mode=f"container:{names['hardened']}",
            pid_mode=f"container:{names['hardened']}",
            ipc_mode=f"container:{names['hardened']}",
            volumes_from=[names["hardened"]],
            labels=managed("prod", "joined"),
        )
        yield names
    finally:
        for container in created:
            try:
                container.remove(force=True, v=True)
            except NotFound:
                pass
        for volume in client.volumes.list(filters={"name": PREFIX}):
            volume.remove(force=True)


HARDENED_OPTIONS = dict(
    user="1000:1000",
    cap_drop=["ALL"],
    read_only=True,
    security_opt=["no-new-privileges:true"],
    mem_limit="32m",
    memswap_limit="32m",
    nano_cpus=NS // 4,
    pids_limit=64,
    healthcheck={"test": ["CMD", "true"], "interval": NS, "timeout": 5 * NS, "retries": 3},
    restart_policy={"Name": "unless-stopped"},
    log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}),
    # Explicit: on a cgroup v1 host Docker's default is the host's cgroup namespace.
    cgroupns="private",
)
"""Every setting the rules ask for, on the engine's API."""


def bypass(client, image: str, created: list) -> str:
    """A hardened container with every bypass of BYPASS_RULES the engine accepts, created (not
    started: nothing here needs to run, and the host paths need not exist)."""
    name = f"{PREFIX}-bypass"
    disguised = client.volumes.create(
        f"{PREFIX}-disguised",
        driver="local",
        driver_opts={"type": "none", "o": "bind", "device": "/."},
        labels={"napdms.backup": "exclude", "napdms.backup.reason": "audit test"},
    )
    hardened = {k: v for k, v in HARDENED_OPTIONS.items() if k not in ("user", "healthcheck")}
    flaws = dict(
        memswap_limit=-1,
        group_add=["0"],
        cap_add=["SYS_TIME"],
        security_opt=["no-new-privileges:true", "label=disable"],
        tmpfs={"/scratch": "exec,size=1m"},
        port_bindings={8080: ("::", BYPASS_PORT)},
        binds={
            "/var/lib/docker": {"bind": "/docker", "mode": "ro"},
            "/./etc//": {"bind": "/host-etc", "mode": "ro"},
            disguised.name: {"bind": "/disguised", "mode": "ro"},
        },
        mounts=[
            Mount(
                "/inline",
                f"{PREFIX}-inline",
                type="volume",
                read_only=True,
                driver_config=DriverConfig(
                    "local", {"type": "none", "o": "bind", "device": "/root"}
                ),
            )
        ],
        device_cgroup_rules=["c 1:3 mr"],
        runtime="io.containerd.runtime.v1.linux",
        cgroupns="host",
    )
    host_config = client.api.create_host_config(**{**hardened, **flaws})
    # `--security-opt systempaths=unconfined` is the CLI's spelling; the daemon takes it as
    # emptied masked and read-only path lists, which is what it reports back.
    host_config.update(MaskedPaths=[], ReadonlyPaths=[])
    created_id = client.api.create_container(
        image,
        ["sleep", "3600"],
        name=name,
        user="1000:0",
        healthcheck=HARDENED_OPTIONS["healthcheck"],
        ports=[8080],
        labels={**managed("prod", "bypass"), "napdms.cap-add.SYS_TIME": "audit test"},
        host_config=host_config,
    )["Id"]
    created.append(client.containers.get(created_id))
    return name


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


def test_bypasses_the_engine_accepts_are_each_reported(report, made):
    verdicts = verdicts_of(report, made["bypass"])
    assert rules_of(report, made["bypass"]) == BYPASS_RULES
    assert all(v.mandatory for v in verdicts)
    problems: dict[str, list[str]] = {}
    for verdict in verdicts:
        problems.setdefault(verdict.finding.rule.id, []).append(verdict.finding.problem)
    assert [p for p in problems["runtime-state-mount"] if "/var/lib/docker" in p]
    # /./etc// and the inline volume that is a bind of /root
    assert sorted(p.split(",")[0] for p in problems["host-mount"]) == [
        "mounts the host's /etc",
        "mounts the host's /root",
    ]
    [disguised] = problems["bind-volume"]
    assert f"{PREFIX}-disguised" in disguised and "root filesystem" in disguised


def test_joining_another_containers_namespaces_and_mounts_is_reported(report, made):
    assert rules_of(report, made["joined"]) == JOINED_RULES
    joined = [v.finding.problem for v in verdicts_of(report, made["joined"])]
    assert sum("namespace" in p for p in joined) == 3, joined


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


def test_a_granted_exemption_turns_the_finding_advisory(report, made):
    (verdict,) = verdicts_of(report, made["exempt"])
    assert verdict.finding.rule.id == "run-as-root"
    assert (verdict.level, verdict.finding.exempt_reason) == ("advisory", GRANTED_REASON)


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
            "rule": "run-as-root",
            "level": "advisory",
            "exempt_reason": GRANTED_REASON,
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
    exempt = rules[made["exempt"], "run-as-root"]
    assert exempt[0].split()[1] == "exempt", f"{made['exempt']} level: {exempt[0]}"
    assert f"exempt: {GRANTED_REASON}" in " ".join(exempt), exempt
    levels = [block[0].split()[1] for block in findings]
    assert levels[0] == "mandatory", f"first finding is {levels[0]}: {findings[0]}"
    first_other = levels.index(next(level for level in levels if level != "mandatory"))
    assert "mandatory" not in levels[first_other:], f"mandatory after advisory: {levels}"
    assert " mandatory, " in " ".join(summary) and "containers" in summary[0], summary
