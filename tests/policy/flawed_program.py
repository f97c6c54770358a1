"""A Pulumi program of hand-written containers that skip `HardenedService`, each with one flaw.

The pack must catch every one of them: `FLAWED[rule_id]` is the container that breaks exactly
that rule (on top of `HARDENED`, which breaks none), and the stack-level flaws sit beside them.
Run it with `tests.program.run_program(stack, {}, main=Path(__file__))`.
"""

import pulumi_docker as docker

DIGEST = "sha256:" + "ab" * 32
LABELS = {"napdms.managed-by": "pulumi", "napdms.stack": "prod", "napdms.service": "fixture"}

HARDENED = dict(
    image=f"docker.io/library/busybox@{DIGEST}",
    user="1000:1000",
    capabilities={"drops": ["ALL"]},
    read_only=True,
    security_opts=["no-new-privileges:true"],
    memory=64,
    memory_swap=64,
    cpus="0.5",
    ulimits=[{"name": "nproc", "soft": 64, "hard": 64}],
    healthcheck={"tests": ["CMD", "true"]},
    restart="unless-stopped",
    log_driver="json-file",
    log_opts={"max-size": "10m", "max-file": "3"},
)

UNEXPRESSIBLE = {"host-uts"}
"""Rules pulumi-docker 5.x cannot break (it has no uts_mode); the audit still checks them live."""

FLAWED = {
    "run-as-root": dict(user="0:0"),
    "privileged": dict(privileged=True),
    "capabilities": dict(capabilities={"adds": ["CHOWN"]}),
    "dangerous-capability": dict(capabilities={"drops": ["ALL"], "adds": ["sys_admin"]}),
    "no-new-privileges": dict(security_opts=[]),
    "unconfined-profile": dict(security_opts=["no-new-privileges:true", "seccomp=unconfined"]),
    "no-memory-limit": dict(memory=None, memory_swap=None),
    "no-cpu-limit": dict(cpus=None),
    "no-pids-limit": dict(ulimits=None),
    "writable-root": dict(read_only=False),
    "docker-socket": dict(
        volumes=[{"host_path": "/var/run/docker.sock", "container_path": "/var/run/docker.sock"}]
    ),
    "host-mount": dict(volumes=[{"host_path": "/etc", "container_path": "/host/etc"}]),
    "host-network": dict(network_mode="host"),
    "host-pid": dict(pid_mode="host"),
    "host-ipc": dict(ipc_mode="host"),
    "host-userns": dict(userns_mode="host"),
    "host-devices": dict(devices=[{"host_path": "/dev/sda"}]),
    "port-all-interfaces": dict(ports=[{"internal": 8080, "external": 18080}]),
    "publish-all-ports": dict(publish_all_ports=True),
    "literal-secret-env": dict(envs=["POSTGRES_PASSWORD=hunter2"]),
    "image-not-pinned": dict(image="docker.io/library/busybox:latest"),
    "no-health-check": dict(healthcheck=None),
    "no-restart-policy": dict(restart="no"),
    "no-log-rotation": dict(log_opts={}),
}
CAUGHT_BY = {flaw_id: flaw_id for flaw_id in FLAWED} | {"publish-all-ports": "port-all-interfaces"}
"""The rule each flawed container must be reported under."""

UNLABELLED = "flawed-unmanaged-container"
"""Breaks `unmanaged-container`: no napdms labels at all."""


def container(name: str, labels: dict, **overrides) -> docker.Container:
    """A container from the hardened settings with `overrides` applied."""
    settings = {**HARDENED, "labels": labels, **overrides}
    settings["labels"] = [{"label": k, "value": v} for k, v in settings["labels"].items()]
    return docker.Container(name, name=name, **{k: v for k, v in settings.items() if v is not None})


def declare() -> None:
    """Register the fixture's resources (only when run as a program, never on import)."""
    container("hardened", LABELS)
    container(UNLABELLED, {})
    for flaw_id, flaw in FLAWED.items():
        container(f"flawed-{flaw_id}", LABELS, **flaw)

    # Exempted: root with a documented reason is advisory, never silent.
    container(
        "exempted-run-as-root",
        {**LABELS, "napdms.exempt.run-as-root": "fixture: sets file owners"},
        user="root",
    )

    # Stack-level flaws: each subject is named flawed-<rule id>.
    docker.Volume("flawed-volume-backup-policy", name="flawed-volume-backup-policy")
    docker.Network(
        "flawed-data-network-internal",
        name="flawed-data-network-internal",
        internal=False,
        labels=[{"label": "napdms.segment", "value": "data"}],
    )
    container(
        "flawed-stateless-replicas",
        {**LABELS, "napdms.service": "lonely", "napdms.stateless": "true"},
    )
    for side in ("a", "b"):
        container(
            f"flawed-host-port-conflict-{side}",
            LABELS,
            ports=[{"internal": 80, "external": 19000, "ip": "127.0.0.1"}],
        )


if __name__ == "__main__":
    declare()
