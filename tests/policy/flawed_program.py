"""A Pulumi program of hand-written containers that skip `HardenedService`, each with one flaw.

The pack must catch every one of them: `FLAWED[rule_id]` is the container that breaks exactly
that rule (on top of `HARDENED`, which breaks none), and the stack-level flaws sit beside them.
Run it with `tests.program.run_program(stack, {}, main=Path(__file__))`.
"""

import pulumi
import pulumi_command as command
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
    # Not a Container field (pulumi-docker 5.x has none): `container()` declares the
    # `docker update --pids-limit 64 <name>` command that sets it.
    pids_limit=64,
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
    "privileged-group": dict(user="1000:0"),
    "custom-seccomp-profile": dict(
        security_opts=["no-new-privileges:true", "seccomp=/etc/docker/seccomp/custom.json"]
    ),
    "memory-swap": dict(memory_swap=-1),
    "exec-tmpfs": dict(tmpfs={"/tmp": "rw,exec,size=1m"}),
    "runtime-state-mount": dict(
        volumes=[{"host_path": "/var/lib/docker", "container_path": "/docker", "read_only": True}]
    ),
    "container-logs-mount": dict(
        volumes=[
            {
                "host_path": "/var/lib/docker/containers",
                "container_path": "/logs",
                "read_only": True,
            }
        ]
    ),
    "volumes-from": dict(volumes=[{"from_container": "hardened"}]),
    "host-cgroupns": dict(cgroupns_mode="host"),
    "shared-namespace": dict(network_mode="container:hardened"),
    "container-runtime": dict(runtime="nvidia"),
}
BYPASSES = {
    # Paths spelled to escape a naive comparison, and mounts given another way.
    "root-dot": (
        "runtime-state-mount",
        dict(volumes=[{"host_path": "/.", "container_path": "/h"}]),
    ),
    "containers-folder-writable": (
        "runtime-state-mount",
        dict(volumes=[{"host_path": "/var/lib/docker/containers", "container_path": "/logs"}]),
    ),
    "root-via-mounts": (
        "runtime-state-mount",
        dict(mounts=[{"type": "bind", "source": "//", "target": "/h", "read_only": True}]),
    ),
    "etc-dotdot": (
        "host-mount",
        dict(volumes=[{"host_path": "/srv/../etc/", "container_path": "/h", "read_only": True}]),
    ),
    "lib-modules-ro": (
        "host-mount",
        dict(
            mounts=[{"type": "bind", "source": "/lib/modules", "target": "/m", "read_only": True}]
        ),
    ),
    "inline-bind-volume": (
        "host-mount",
        dict(
            mounts=[
                {
                    "type": "volume",
                    "source": "flawed-inline-bind-volume",
                    "target": "/h",
                    "volume_options": {
                        "driver_name": "local",
                        "driver_options": {"type": "none", "o": "bind", "device": "/root"},
                    },
                }
            ]
        ),
    ),
    "containerd-socket": (
        "docker-socket",
        dict(
            mounts=[
                {"type": "bind", "source": "/run/containerd/containerd.sock", "target": "/c.sock"}
            ]
        ),
    ),
    "podman-socket-dir": (
        "docker-socket",
        dict(volumes=[{"host_path": "/var/run/podman/", "container_path": "/p"}]),
    ),
    # Namespaces, devices, groups.
    "pid-of-another-container": ("shared-namespace", dict(pid_mode="container:hardened")),
    "gpus": ("host-devices", dict(gpus="all")),
    "device-requests": (
        "host-devices",
        dict(device_requests=[{"count": -1, "capabilities": ["gpu"]}]),
    ),
    "device-cgroup-rule": ("host-devices", dict(device_cgroup_rules=["c 1:3 mr"])),
    "group-add-root": ("privileged-group", dict(group_adds=["0"])),
    "group-add-docker": ("privileged-group", dict(group_adds=["docker"])),
    # Capabilities and security options in other spellings.
    "cap-sys-time": (
        "dangerous-capability",
        dict(capabilities={"drops": ["ALL"], "adds": ["CAP_SYS_TIME"]}),
    ),
    "cap-bpf-lower": (
        "dangerous-capability",
        dict(capabilities={"drops": ["ALL"], "adds": ["bpf"]}),
    ),
    "label-disable": (
        "unconfined-profile",
        dict(security_opts=["no-new-privileges:true", "label:disable"]),
    ),
    "systempaths-unconfined": (
        "unconfined-profile",
        dict(security_opts=["no-new-privileges:true", "systempaths=unconfined"]),
    ),
    # Wildcard addresses, swap, secrets.
    "port-ipv6-any": (
        "port-all-interfaces",
        dict(ports=[{"internal": 80, "external": 18081, "ip": "::"}]),
    ),
    "port-ipv4-mapped-any": (
        "port-all-interfaces",
        dict(ports=[{"internal": 80, "external": 18082, "ip": "::ffff:0.0.0.0"}]),
    ),
    "swap-unset": ("memory-swap", dict(memory_swap=None)),
    "pgpassword": ("literal-secret-env", dict(envs=["PGPASSWORD=hunter2"])),
    "mongo-url-password": (
        "literal-secret-env",
        dict(envs=["MONGO_URL=mongodb://rocketchat:hunter2@mongodb:27017/rocketchat"]),
    ),
}
"""Other spellings and other fields with the same effect: each flawed-<id> container must be
reported under the rule it names."""
FLAWED |= {flaw_id: overrides for flaw_id, (_rule, overrides) in BYPASSES.items()}
CAUGHT_BY = (
    {flaw_id: flaw_id for flaw_id in FLAWED}
    | {"publish-all-ports": "port-all-interfaces"}
    | {flaw_id: rule_id for flaw_id, (rule_id, _overrides) in BYPASSES.items()}
)
"""The rule each flawed container must be reported under."""

UNLABELLED = "flawed-unmanaged-container"
"""Breaks `unmanaged-container`: no napdms labels at all."""


SELF_EXEMPTED = "self-exempted"
"""Privileged, with the Docker socket and the host's / mounted, and labels exempting it from
each of `SELF_EXEMPTIONS`."""
SELF_EXEMPTIONS = ("privileged", "docker-socket", "host-mount", "runtime-state-mount")


PIDS_FLAWS: dict[str, list[dict]] = {
    "flawed-no-pids-limit": [],
    "flawed-no-pids-limit-other-name": [
        dict(create="docker update --pids-limit 64 flawed-no-pids-limit-elsewhere")
    ],
    "flawed-no-pids-limit-zero": [dict(create="docker update --pids-limit 0 {name}")],
    "flawed-no-pids-limit-negative": [dict(create="docker update --pids-limit -1 {name}")],
    "flawed-no-pids-limit-equals-unlimited": [dict(create="docker update --pids-limit=-1 {name}")],
    "flawed-no-pids-limit-chained": [
        dict(create="docker update --pids-limit 64 {name}; docker update --pids-limit -1 {name}")
    ],
    "flawed-no-pids-limit-undone-beside": [
        dict(create="docker update --pids-limit 64 {name}"),
        dict(create="sh -c 'docker update --pids-limit=-1 {name}'"),
    ],
    "flawed-no-pids-limit-undone-on-delete": [
        dict(
            create="docker update --pids-limit 64 {name}",
            delete="docker update --pids-limit -1 {name}",
        )
    ],
    "flawed-no-pids-limit-other-host": [
        dict(
            create="docker update --pids-limit 64 {name}",
            environment={"DOCKER_HOST": "ssh://deploy@elsewhere.example.org"},
        )
    ],
    "flawed-no-pids-limit-other-docker": [
        dict(create="docker update --pids-limit 64 {name}", environment={"PATH": "/tmp/fake"})
    ],
    "flawed-no-pids-limit-interpreter": [
        dict(create="docker update --pids-limit 64 {name}", interpreter=["/bin/true"])
    ],
}
"""Stack-level flaws of `no-pids-limit`: a container (otherwise hardened) and the commands beside
it, none of which gives it a PIDs limit (`{name}` is the container's name)."""


def container(name: str, labels: dict, **overrides) -> docker.Container:
    """A container from the hardened settings with `overrides` applied, and the command that sets
    its PIDs limit (`pids_limit=None`: none)."""
    settings = {**HARDENED, "labels": labels, **overrides}
    pids_limit = settings.pop("pids_limit")
    settings["labels"] = [{"label": k, "value": v} for k, v in settings["labels"].items()]
    created = docker.Container(
        name, name=name, **{k: v for k, v in settings.items() if v is not None}
    )
    if pids_limit is not None:
        pids_command(
            f"{name}-pids", created, create=f"docker update --pids-limit {pids_limit} {name}"
        )
    return created


def pids_command(resource_name: str, target: docker.Container, **args) -> command.local.Command:
    """A local command run once `target` exists and again when it is replaced."""
    return command.local.Command(
        resource_name,
        triggers=[target.id],
        opts=pulumi.ResourceOptions(depends_on=[target]),
        **args,
    )


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

    # A label no stack grants: nothing else wrong with it.
    container(
        "flawed-unauthorised-exemption",
        {**LABELS, "napdms.exempt.run-as-root": "fixture: not granted"},
    )

    # Self-exempted: owns the host and labels itself exempt; no stack grants it anything.
    container(
        SELF_EXEMPTED,
        {**LABELS, **{f"napdms.exempt.{rule}": "fixture: trust me" for rule in SELF_EXEMPTIONS}},
        privileged=True,
        volumes=[
            {"host_path": "/var/run/docker.sock", "container_path": "/var/run/docker.sock"},
            {"host_path": "/", "container_path": "/host"},
        ],
    )

    # Stack-level flaws: each subject is named flawed-<rule id>.
    docker.Volume("flawed-volume-backup-policy", name="flawed-volume-backup-policy")
    docker.Network(
        "flawed-data-network-internal",
        name="flawed-data-network-internal",
        internal=False,
        labels=[{"label": "napdms.segment", "value": "data"}],
    )
    # A named volume that is a bind of the host's /etc, declared apart from its container.
    disguised = docker.Volume(
        "flawed-bind-volume-etc",
        name="flawed-bind-volume-etc",
        driver="local",
        driver_opts={"type": "none", "o": "bind", "device": "/etc"},
        labels=[
            {"label": "napdms.backup", "value": "exclude"},
            {"label": "napdms.backup.reason", "value": "fixture"},
        ],
    )
    container(
        "flawed-bind-volume",
        LABELS,
        volumes=[{"volume_name": disguised.name, "container_path": "/h", "read_only": True}],
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
    for name, commands in PIDS_FLAWS.items():
        target = container(name, LABELS, pids_limit=None)
        for number, args in enumerate(commands, start=1):
            pids_command(
                f"{name}-pids-{number}",
                target,
                **{k: v.format(name=name) if isinstance(v, str) else v for k, v in args.items()},
            )


if __name__ == "__main__":
    declare()
