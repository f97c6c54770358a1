"""What a container can see of the host: its filesystem, namespaces, devices and Docker itself.

Host paths are compared only after normalising them (`/srv/../etc/`, `//etc` and `/./etc` are
`/etc`), and each is judged twice: as written, and with the host's usual symbolic links resolved
(`/var/run` is `/run`, so `/var/run/../etc` is `/etc`, not `/var/etc`). A bind source reaches
one of four things, most dangerous first: the host's root or a container runtime's state
(`runtime-state-mount`), a runtime's socket or a folder holding one (`docker-socket`), Docker's
`containers` folder read-only (`container-logs-mount`: every container's logs and settings, where
a log shipper reads the json-file logs without the socket; written to, it is runtime state), or
another sensitive host folder (`host-mount`). Each mount is reported once, under the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .facts import ContainerFacts, Mount, StackFacts, normalize_host_path
from .rule import Subject, container_rule, stack_rule

ROOT = "/"
RUNTIME_SOCKETS = (
    "/run/docker.sock",
    "/run/dockershim.sock",
    "/run/cri-dockerd.sock",
    "/run/docker/containerd/containerd.sock",
    "/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock.ttrpc",
    "/run/crio/crio.sock",
    "/run/podman/podman.sock",
    "/run/buildkit/buildkitd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/user/*/docker.sock",
    "/run/user/*/podman/podman.sock",
    "/run/user/*/containerd-rootless/containerd.sock",
)
"""Where container runtimes put their API sockets (`/var/run` is a link to `/run`). `*` is any
one path segment (a uid)."""
_SOCKET_NAME = re.compile(
    r"(docker|containerd|crio|cri-o|podman|buildkit|dockershim)[^/]*\.sock(\.ttrpc)?$"
)
"""A socket named after a runtime, wherever it lives (`/tmp/dockerd.sock`, `/srv/podman.sock`)."""
RUNTIME_STATE = (
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/containers",
    "/var/lib/crio",
    "/var/lib/buildkit",
    "/var/lib/rancher/k3s",
    "/var/snap/docker",
    "/run/docker",
    "/run/containerd",
    "/run/crio",
    "/run/containers",
    "/run/libpod",
    "/run/runc",
    "/run/podman",
)
"""Container runtimes' data roots and run state: whoever writes there controls every container,
whoever reads there reads every volume, image and container log. A folder above one of them
reaches it too (`/var`, `/var/lib`). Their configuration (`/etc/docker`, with the daemon's TLS
keys) is under /etc, a `host-mount`."""
RUNTIME_STATE_PATTERNS = (
    "/run/user/*/containers",
    "/run/user/*/libpod",
    "/run/user/*/docker",
    "/home/*/.local/share/containers",
    "/home/*/.local/share/docker",
    "/root/.local/share/containers",
    "/root/.local/share/docker",
)
"""Rootless runtimes' state, per user."""
_STATE_SEGMENTS = (("lib", "docker"), ("lib", "containerd"), ("lib", "containers"), ("@docker",))
"""A data root elsewhere: QNAP's `.../container-station-data/lib/docker`, Synology's
`/volume1/@docker`."""
SENSITIVE_HOST_PATHS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/sbin",
    "/sys",
    "/usr",
)
"""CIS 5.6's list and its kin: the host's configuration, binaries, kernel modules (under /lib),
kernel interfaces, devices and users' files. Read-only is no excuse: they hold keys, hashes
and every process's environment."""
HOST_LINKS = {
    "/var/run": "/run",
    "/var/lock": "/run/lock",
    "/bin": "/usr/bin",
    "/sbin": "/usr/sbin",
    "/lib": "/usr/lib",
    "/lib32": "/usr/lib32",
    "/lib64": "/usr/lib64",
    "/libx32": "/usr/libx32",
}
"""Symbolic links of a usual Linux host (merged /usr, /var/run)."""

DOCKER_ROOTS = ("/var/lib/docker", "/var/snap/docker/common/var-lib-docker")
"""Docker's usual data roots; a stack names others in `stateDirs`, and a root found by its
segments (`_STATE_SEGMENTS`) counts as one too."""
CONTAINERS_FOLDER = "containers"
"""The folder of a Docker data root holding each container's json-file log, its config (its
environment included) and hostconfig: no volume, image or socket."""

RUNTIME_STATE_MOUNT = "runtime-state-mount"
DOCKER_SOCKET = "docker-socket"
CONTAINER_LOGS_MOUNT = "container-logs-mount"
HOST_MOUNT = "host-mount"
_ORDER = (RUNTIME_STATE_MOUNT, DOCKER_SOCKET, CONTAINER_LOGS_MOUNT, HOST_MOUNT)
STATE_DIRS_SETTING = "stateDirs"
_STATE_DIRS_SCHEMA = {
    STATE_DIRS_SETTING: {
        "type": "array",
        "items": {"type": "string", "pattern": "^/"},
        "description": (
            "More container-runtime state folders of this stack's hosts, e.g. Docker's data root "
            "when it is not /var/lib/docker (`docker info --format '{{.DockerRootDir}}'`)"
        ),
    }
}


def classify_host_path(path: str, state_dirs: Sequence[str] = ()) -> tuple[str, str, str] | None:
    """What a bind of the host's `path` reaches: (rule id, the path as judged, what it is), for
    the most dangerous reading of the path; None for an ordinary folder, or an unknown path."""
    if not path.strip():
        return None  # not known yet (preview): nothing to judge
    written = normalize_host_path(path)
    found = [
        (_ORDER.index(rule_id), rule_id, candidate, what)
        for candidate in dict.fromkeys((written, resolve_host_links(path)))
        for rule_id, what in [_classify(candidate, state_dirs)]
        if rule_id
    ]
    if not found:
        return None
    if any(f[1] != CONTAINER_LOGS_MOUNT for f in found):
        # The grantable reading counts only when no reading of the path is anything else.
        found = [f for f in found if f[1] != CONTAINER_LOGS_MOUNT]
    _rank, rule_id, candidate, what = min(found, key=lambda f: (f[0], f[2] != written))
    return rule_id, candidate, what


def resolve_host_links(path: str) -> str:
    """`path` with `HOST_LINKS` followed segment by segment, `..` applied after each link as
    the kernel does: `/var/run/../etc` is `/etc`."""
    parts: list[str] = []
    pending = [p for p in path.strip().split("/") if p not in ("", ".")]
    pending.reverse()
    followed = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
        target = HOST_LINKS.get("/" + "/".join(parts))
        if target is not None and followed < 40:
            followed += 1
            parts = []
            pending.extend(reversed([p for p in target.split("/") if p]))
    return "/" + "/".join(parts)


def _classify(path: str, state_dirs: Sequence[str]) -> tuple[str | None, str]:
    if path == ROOT:
        return RUNTIME_STATE_MOUNT, "the host's root filesystem"
    if _SOCKET_NAME.search(path.rsplit("/", 1)[-1]) or any(
        _matches(path, s) for s in RUNTIME_SOCKETS
    ):
        return DOCKER_SOCKET, "a container runtime's socket"
    if any(_matches(path, s, prefix=True) for s in RUNTIME_SOCKETS):
        return DOCKER_SOCKET, "a folder holding a container runtime's socket"
    named = [normalize_host_path(d) for d in state_dirs if str(d).strip()]
    if _in_containers_folder(path, [*DOCKER_ROOTS, *named]):
        return (
            CONTAINER_LOGS_MOUNT,
            "Docker's containers folder (every container's logs and settings)",
        )
    state = [*RUNTIME_STATE, *named]
    if any(_within(path, d) or _within(d, path) for d in state):
        return RUNTIME_STATE_MOUNT, "a container runtime's state"
    if any(_matches(path, p, under=True) for p in RUNTIME_STATE_PATTERNS) or _state_segments(path):
        return RUNTIME_STATE_MOUNT, "a container runtime's state"
    if any(_within(path, p) for p in SENSITIVE_HOST_PATHS):
        return HOST_MOUNT, "a sensitive host folder"
    return None, ""


def _in_containers_folder(path: str, roots: Sequence[str]) -> bool:
    """`path` is a Docker data root's `containers` folder or lies below it (normalised first, so
    `containers/../volumes` is not)."""
    if any(_within(path, f"{root.rstrip('/')}/{CONTAINERS_FOLDER}") for root in roots):
        return True
    if _within(path, "/usr"):
        return False
    parts = path.strip("/").split("/")
    return any(
        tuple(parts[i : i + len(seq)]) == seq
        and parts[i + len(seq) : i + len(seq) + 1] == [CONTAINERS_FOLDER]
        for seq in _STATE_SEGMENTS
        if seq != ("lib", "containerd") and seq != ("lib", "containers")
        for i in range(len(parts))
    )


def _within(path: str, folder: str) -> bool:
    """`path` is `folder` or under it."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _matches(path: str, pattern: str, *, prefix: bool = False, under: bool = False) -> bool:
    """`path` matches `pattern` segment by segment (`*` is one segment); with `prefix`, `path`
    may be `pattern`'s ancestor (the patterns here all live under /run, never `/` itself);
    with `under`, its descendant."""
    got, want = path.strip("/").split("/"), pattern.strip("/").split("/")
    if prefix:
        want = want[: len(got)]
    if under:
        got = got[: len(want)]
    return len(got) == len(want) and all(w in ("*", g) for g, w in zip(got, want, strict=True))


def _state_segments(path: str) -> bool:
    if _within(path, "/usr"):
        return False  # /usr/lib/docker holds the CLI's plugins, not a data root
    parts = path.strip("/").split("/")
    return any(
        tuple(parts[i : i + len(seq)]) == seq for seq in _STATE_SEGMENTS for i in range(len(parts))
    )


def _binds(c: ContainerFacts, rule_id: str, settings: Mapping[str, Any]) -> Iterable[str]:
    for mount in c.mounts:
        if mount.kind.strip().lower() != "bind":
            continue
        judged = classify_host_path(mount.source, settings.get(STATE_DIRS_SETTING) or ())
        if judged and judged[0] == CONTAINER_LOGS_MOUNT and not mount.read_only:
            # Whoever writes a container's config.v2.json runs it as they like at its next start.
            judged = (RUNTIME_STATE_MOUNT, judged[1], "a container runtime's state, writable")
        if judged and judged[0] == rule_id:
            yield describe_bind(mount, judged)


def describe_bind(mount: Mount, judged: tuple[str, str, str]) -> str:
    """One line for a bind: which host path, what it is, where and how it is mounted."""
    _rule, path, what = judged
    mode = "read-only" if mount.read_only else "read-write"
    via = f" (through the local volume {mount.volume})" if mount.volume else ""
    shown = path if path == normalize_host_path(mount.source) else f"{mount.source} ({path})"
    if what == "the host's root filesystem":
        return f"mounts the host's root filesystem {mount.source} at {mount.target} {mode}{via}"
    return f"mounts the host's {shown}, {what}, at {mount.target} {mode}{via}"


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


_TMPFS_FLAGS = {"exec": "noexec", "suid": "nosuid", "dev": "nodev"}
"""Each tmpfs flag that weakens the mount, and the hardened flag Docker defaults to."""


def tmpfs_weakened(options: str) -> list[str]:
    """The flags among exec, suid and dev a tmpfs ends up with: Docker starts from
    noexec,nosuid,nodev and the options given override them, the last one winning."""
    state = dict.fromkeys(_TMPFS_FLAGS, False)
    for option in options.split(","):
        option = option.strip().lower()
        if option in _TMPFS_FLAGS:
            state[option] = True
        elif option in _TMPFS_FLAGS.values():
            state[option.removeprefix("no")] = False
    return [flag for flag, on in state.items() if on]


@container_rule(
    id="exec-tmpfs",
    title="Every tmpfs is noexec,nosuid,nodev",
    severity="medium",
    fix=(
        'give the tmpfs "noexec,nosuid,nodev" (HardenedService does) and drop exec, suid and dev: '
        "a writable, executable folder is where a dropped binary runs"
    ),
)
def exec_tmpfs(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for mount in c.mounts:
        if mount.kind.strip().lower() == "tmpfs" and (weak := tmpfs_weakened(mount.options)):
            yield f"the tmpfs at {mount.target} is mounted {','.join(weak)}"


@container_rule(
    id=DOCKER_SOCKET,
    title="No container mounts a container runtime's socket",
    severity="critical",
    cis="5.32",
    fix=(
        "remove the mount of the runtime socket (docker, containerd, cri-o, podman) or of the "
        "folder holding it (/run, /var/run, /run/containerd, ...): a container with it is root "
        "on the host"
    ),
)
def docker_socket(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    yield from _binds(c, DOCKER_SOCKET, {})


@container_rule(
    id=RUNTIME_STATE_MOUNT,
    title="No container mounts the host's / or a container runtime's state",
    severity="critical",
    cis="5.6",
    fix=(
        "remove the mount: the host's / and a runtime's state (/var/lib/docker, "
        "/var/lib/containerd, /run/containerd, podman's and cri-o's folders, Docker's data root) "
        "give every container's files and the host itself; mount only the single file needed"
    ),
    config_schema=_STATE_DIRS_SCHEMA,
    defaults={STATE_DIRS_SETTING: []},
)
def runtime_state_mount(c: ContainerFacts, settings: Mapping[str, Any]) -> Iterable[str]:
    yield from _binds(c, RUNTIME_STATE_MOUNT, settings)


@container_rule(
    id=CONTAINER_LOGS_MOUNT,
    title="No container reads Docker's containers folder without a grant",
    severity="high",
    cis="5.6",
    fix=(
        "remove the mount; only a log shipper may read <docker root>/containers, read-only, with "
        "a grant: the folder holds every container's logs and its settings, environment included"
    ),
    config_schema=_STATE_DIRS_SCHEMA,
    defaults={STATE_DIRS_SETTING: []},
)
def container_logs_mount(c: ContainerFacts, settings: Mapping[str, Any]) -> Iterable[str]:
    yield from _binds(c, CONTAINER_LOGS_MOUNT, settings)


@container_rule(
    id=HOST_MOUNT,
    title="No container mounts a sensitive host directory, read-write or read-only",
    severity="high",
    cis="5.6",
    fix=(
        "mount a named volume instead, or only the single file needed; /etc, /root, /home, "
        "/boot, /lib/modules, /proc, /sys, /dev, /usr and the like stay out even read-only"
    ),
)
def host_mount(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    yield from _binds(c, HOST_MOUNT, {})


@stack_rule(
    id="bind-volume",
    title="No named volume is a bind of a sensitive host path in disguise",
    severity="critical",
    cis="5.6",
    fix=(
        "a local volume with o=bind (or a block device) and device=<host path> is a bind mount: "
        "remove it, or declare an ordinary bind of a harmless path so the mount rules see it"
    ),
    config_schema=_STATE_DIRS_SCHEMA,
    defaults={STATE_DIRS_SETTING: []},
)
def bind_volume(stack: StackFacts, settings: Mapping[str, Any]) -> Iterable[tuple[Subject, str]]:
    binds = {
        (v.host, v.name): source for v in stack.volumes if (source := v.bind_source) is not None
    }
    for container in stack.containers:
        for mount in container.mounts:
            source = binds.get((container.host, mount.source))
            if mount.kind.strip().lower() != "volume" or source is None:
                continue
            judged = classify_host_path(source, settings.get(STATE_DIRS_SETTING) or ())
            if judged:
                bind = Mount("bind", source, mount.target, mount.read_only, volume=mount.source)
                yield container, f"{describe_bind(bind, judged)}: what {judged[0]} forbids"


@container_rule(
    id="volumes-from",
    title="No container inherits another container's mounts",
    severity="high",
    fix=(
        "remove volumes_from / from_container and mount the named volumes the service needs "
        "itself, so each mount is declared, and judged, where it is used"
    ),
)
def volumes_from(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for other in c.volumes_from:
        yield f"inherits every mount of container {other}, binds included"


def _namespace_rule(
    kind: str,
    field: str,
    rule_id: str,
    cis: str | None,
    why: str,
    severity: str = "high",
    fix: str | None = None,
) -> None:
    def check(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
        if getattr(c, field).strip().lower() == "host":
            yield f"shares the host's {kind} namespace: {why}"

    container_rule(
        id=rule_id,
        title=f"No container shares the host's {kind} namespace",
        severity=severity,
        cis=cis,
        fix=fix or f"remove {field} host; use the default private namespace",
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
_namespace_rule(
    "cgroup",
    "cgroupns_mode",
    "host-cgroupns",
    None,
    "it sees the host's whole cgroup tree and every container's place in it",
    severity="medium",
    fix=(
        "set cgroupns_mode \"private\" (on a cgroup v1 host Docker's default is the host's "
        "namespace, so say it explicitly)"
    ),
)


@container_rule(
    id="shared-namespace",
    title="No container joins another container's namespaces",
    severity="high",
    fix=(
        "remove network_mode / pid_mode / ipc_mode container:<name>; containers that must talk "
        "share a network, not a namespace"
    ),
)
def shared_namespace(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for kind, mode in (("network", c.network_mode), ("PID", c.pid_mode), ("IPC", c.ipc_mode)):
        key, sep, other = mode.strip().partition(":")
        if sep and key.strip().lower() == "container":
            other = other.strip()
            other = other[:12] if re.fullmatch(r"[0-9a-f]{64}", other) else other
            yield (
                f"joins the {kind} namespace of container {other}: it sees and reaches "
                "what that container does, whatever that container is allowed"
            )


DEFAULT_RUNTIMES = ("runc", "io.containerd.runc.v2")
"""Docker's default runtime under its two names."""


@container_rule(
    id="container-runtime",
    title="Containers run on the default runtime (runc)",
    severity="high",
    fix=(
        "remove runtime; another runtime (nvidia, kata, a custom binary) runs with other "
        "privileges and isolation than the ones reviewed; a stack that vets one lists it in "
        "allowedRuntimes"
    ),
    config_schema={"allowedRuntimes": {"type": "array", "items": {"type": "string"}}},
    defaults={"allowedRuntimes": list(DEFAULT_RUNTIMES)},
)
def container_runtime(c: ContainerFacts, settings: Mapping[str, Any]) -> Iterable[str]:
    runtime = c.runtime.strip()
    allowed = {str(r).strip().lower() for r in settings["allowedRuntimes"]}
    if runtime and runtime.lower() not in allowed:
        yield f"runs on the runtime {runtime!r}, not the default runc"


@container_rule(
    id="host-devices",
    title="No host device is given to a container",
    severity="high",
    cis="5.18",
    fix="remove the device mapping, device request (gpus) and device cgroup rule",
)
def host_devices(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for device in c.devices:
        yield f"maps the host device {device}"
    for request in c.device_requests:
        yield f"requests host devices from a device driver ({request})"
    for rule in c.device_cgroup_rules:
        yield f"may use host devices by the cgroup rule {rule!r}"
