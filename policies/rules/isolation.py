"""What a container can see of the host: its filesystem, namespaces, devices and Docker itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts
from .rule import container_rule

SENSITIVE_HOST_PATHS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
"""CIS 5.6's list: a container that mounts these can read or change the host itself."""
SOCKET_DIRECTORIES = ("/run", "/var/run")
"""Mounting the folder gives the same access as mounting the socket in it."""


@container_rule(
    id="writable-root",
    title="Root filesystems are read-only",
    severity="medium",
    cis="5.13",
    fix="set read_only true and give the paths the service writes a tmpfs or a volume",
)
def writable_root(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if not c.read_only_root:
        yield (
            "the root filesystem is writable, so an intruder can replace the service's own binaries"
        )


@container_rule(
    id="docker-socket",
    title="No container mounts the Docker socket",
    severity="critical",
    cis="5.32",
    fix="remove the docker.sock mount; a container with the socket is root on the host",
)
def docker_socket(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for mount in c.mounts:
        if mount.kind != "bind":
            continue
        if _is_docker_socket(mount.source):
            yield f"mounts the Docker socket {mount.source} at {mount.target}"
        elif (directory := _normal_path(mount.source)) in SOCKET_DIRECTORIES:
            yield f"mounts the host's {directory}, which holds the Docker socket, at {mount.target}"


@container_rule(
    id="host-mount",
    title="No container mounts a sensitive host directory",
    severity="high",
    cis="5.6",
    fix="mount a named volume instead, or only the single file needed, read-only",
)
def host_mount(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for mount in c.mounts:
        if (
            mount.kind != "bind"
            or _is_docker_socket(mount.source)
            or _normal_path(mount.source) in SOCKET_DIRECTORIES
        ):
            continue
        source = _normal_path(mount.source)
        if any(
            source == p or (p != "/" and source.startswith(p + "/")) for p in SENSITIVE_HOST_PATHS
        ):
            mode = "read-only" if mount.read_only else "read-write"
            yield f"mounts the host's {source} at {mount.target} {mode}"


def _namespace_rule(kind: str, field: str, rule_id: str, cis: str, why: str) -> None:
    def check(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
        if getattr(c, field).strip().lower() == "host":
            yield f"shares the host's {kind} namespace: {why}"

    container_rule(
        id=rule_id,
        title=f"No container shares the host's {kind} namespace",
        severity="high",
        cis=cis,
        fix=f"remove {field} host; use the default private namespace",
    )(check)


_namespace_rule(
    "network",
    "network_mode",
    "host-network",
    "5.10",
    "it can bind any host port and sniff host traffic",
)
_namespace_rule(
    "PID", "pid_mode", "host-pid", "5.16", "it sees and can signal every process of the host"
)
_namespace_rule(
    "IPC", "ipc_mode", "host-ipc", "5.17", "it reads the shared memory of host processes"
)
_namespace_rule("UTS", "uts_mode", "host-uts", "5.21", "it can change the host's hostname")
_namespace_rule(
    "user", "userns_mode", "host-userns", "5.31", "it leaves the daemon's user remapping"
)


@container_rule(
    id="host-devices",
    title="No host device is mapped into a container",
    severity="high",
    cis="5.18",
    fix="remove the device mapping",
)
def host_devices(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for device in c.devices:
        yield f"maps the host device {device}"


def _is_docker_socket(path: str) -> bool:
    name = _normal_path(path).rsplit("/", 1)[-1]
    return name.endswith(".sock") and "docker" in name


def _normal_path(path: str) -> str:
    trimmed = "/" + path.strip().strip("/")
    while "//" in trimmed:
        trimmed = trimmed.replace("//", "/")
    return trimmed
