"""Facts from the properties of pulumi-docker resources, as the engine hands them to a policy.

Property names are the engine's camelCase (`readOnly`, `securityOpts`, `logOpts`);
pulumi-docker gives memory in MB and cpus as a string. During preview some values are not known
yet (the image digest of a pull that has not happened): those arrive as Pulumi's unknown sentinels.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from .facts import (
    ContainerFacts,
    Mount,
    NetworkFacts,
    PublishedPort,
    VolumeFacts,
    local_bind_source,
    normalize_capability,
    split_env,
)

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"
COMMAND = "command:local:Command"
"""pulumi-command's local command: how a container gets its PIDs limit (pulumi-docker 5.x has no
field for it), see `pids_limits_from_commands`."""

_UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)
_MB = 1024 * 1024


def container(props: Mapping[str, Any], name: str, host: str = "") -> ContainerFacts:
    """Facts of a `docker.Container` from its properties; `name` is the Pulumi resource name."""
    caps = _map(props.get("capabilities"))
    health = _map(props.get("healthcheck"))
    return ContainerFacts(
        name=_str(props.get("name")) or name,
        labels=_labels(props.get("labels")),
        image=None if _unknown(props.get("image")) else _str(props.get("image")),
        user=_str(props.get("user")),
        group_add=tuple(_strs(props.get("groupAdds"))),
        privileged=props.get("privileged") is True,
        cap_add=tuple(normalize_capability(c) for c in _strs(caps.get("adds"))),
        cap_drop=tuple(normalize_capability(c) for c in _strs(caps.get("drops"))),
        memory_bytes=_int(props.get("memory")) * _MB,
        memory_swap_bytes=_swap(props.get("memorySwap")),
        cpus=_float(props.get("cpus")) or _quota(props.get("cpuQuota"), props.get("cpuPeriod")),
        cpu_shares=_int(props.get("cpuShares")),
        health_test=tuple(_strs(health.get("tests"))),
        read_only_root=props.get("readOnly") is True,
        security_opts=tuple(_strs(props.get("securityOpts"))),
        mounts=_mounts(props),
        volumes_from=tuple(
            other
            for other in [
                *(_str(_map(v).get("fromContainer")) for v in _list(props.get("volumes"))),
                # Not in pulumi-docker 5.2, which has only volumes[].fromContainer; other
                # versions of the provider spell it so.
                *_strs(props.get("volumesFroms")),
                *_strs(props.get("volumesFrom")),
            ]
            if other
        ),
        network_mode=_str(props.get("networkMode")),
        pid_mode=_str(props.get("pidMode")),
        ipc_mode=_str(props.get("ipcMode")),
        uts_mode=_str(props.get("utsMode")),
        userns_mode=_str(props.get("usernsMode")),
        cgroupns_mode=_str(props.get("cgroupnsMode")),
        runtime=_str(props.get("runtime")),
        devices=tuple(_str(_map(d).get("hostPath")) for d in _list(props.get("devices"))),
        device_requests=_device_requests(props),
        device_cgroup_rules=tuple(_strs(props.get("deviceCgroupRules"))),
        ports=tuple(
            PublishedPort(
                # The provider's default ip is 0.0.0.0.
                host_ip=_str(_map(p).get("ip")) or "0.0.0.0",
                host_port=_int(_map(p).get("external")),
                container_port=_int(_map(p).get("internal")),
                protocol=_str(_map(p).get("protocol")) or "tcp",
            )
            for p in _list(props.get("ports"))
        ),
        publish_all=props.get("publishAllPorts") is True,
        env=tuple(split_env(e) for e in _strs(props.get("envs"))),
        restart=_str(props.get("restart")),
        max_retries=_int(props.get("maxRetryCount")),
        log_driver=_str(props.get("logDriver")),
        log_opts={k: _str(v) for k, v in _map(props.get("logOpts")).items()},
        host=host,
    )


def volume(props: Mapping[str, Any], name: str, host: str = "") -> VolumeFacts:
    """Facts of a `docker.Volume`."""
    return VolumeFacts(
        name=_str(props.get("name")) or name,
        labels=_labels(props.get("labels")),
        host=host,
        driver=_str(props.get("driver")),
        options={k: _str(v) for k, v in _map(props.get("driverOpts")).items()},
    )


def network(props: Mapping[str, Any], name: str, host: str = "") -> NetworkFacts:
    """Facts of a `docker.Network`."""
    return NetworkFacts(
        name=_str(props.get("name")) or name,
        internal=props.get("internal") is True,
        labels=_labels(props.get("labels")),
        host=host,
    )


def docker_endpoint(provider_props: Mapping[str, Any] | None) -> str:
    """The Docker endpoint of a docker provider from its properties; "" when it leaves it to
    DOCKER_HOST or the local socket (as a command without DOCKER_HOST does)."""
    return _str(_map(provider_props).get("host"))


def pids_limits_from_commands(commands: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """The PIDs limit the stack's commands give each container, by (Docker endpoint, container
    name); a container that is not a key has none.

    Only a command `read_pids_command` accepts sets a limit (two for one container: the lower).
    A container that any other command names together with `pids` (`docker update
    --pids-limit=-1 NAME` beside it, `sh -c '...'`, a `PidsLimit` API call) has none: which one
    runs last, and what it does, is not for the pack to guess."""
    parsed = [(props, read_pids_command(props)) for props in commands]
    limits: dict[tuple[str, str], int] = {}
    for _props, found in parsed:
        if found is not None:
            endpoint, name, limit = found
            limits[(endpoint, name)] = min(limit, limits.get((endpoint, name), limit))
    others = [
        _str(props.get(key))
        for props, found in parsed
        if found is None
        for key in ("create", "update", "delete")
    ]
    return {
        (endpoint, name): limit
        for (endpoint, name), limit in limits.items()
        if not any(_touches_pids_of(text, name) for text in others)
    }


def read_pids_command(props: Mapping[str, Any]) -> tuple[str, str, int] | None:
    """(Docker endpoint, container name, limit) when a `command:local:Command` sets one
    container's PIDs limit and does nothing else, else None. That is: `create` is exactly
    `docker update --pids-limit <N> <name>` with N > 0 (no other option, no second command, no
    shell expansion: a shell runs it), the default interpreter, no `update` or `delete` command
    (a `delete` runs when the command is replaced), and no environment but DOCKER_HOST (PATH,
    DOCKER_CONTEXT or DOCKER_CONFIG could send the CLI elsewhere). The endpoint is DOCKER_HOST,
    "" when unset."""
    create = props.get("create")
    environment = _map(props.get("environment"))
    endpoint = environment.get("DOCKER_HOST", "")
    if (
        not isinstance(create, str)
        or not isinstance(endpoint, str)
        or _unknown(create)
        or _unknown(endpoint)
        or set(environment) - {"DOCKER_HOST"}
        or any(props.get(key) for key in ("interpreter", "update", "delete"))
        # The shell ends a command at a newline; shlex would read it as a blank.
        or any(ord(char) < 0x20 or char == "\x7f" for char in create)
    ):
        return None
    lexer = shlex.shlex(create, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    try:
        words = list(lexer)
    except ValueError:  # an unclosed quote
        return None
    match words:
        case ["docker", "update", "--pids-limit", limit, name]:
            if _PIDS_LIMIT.fullmatch(limit) and _CONTAINER_NAME.fullmatch(name):
                return endpoint, name, int(limit)
    return None


_PIDS_LIMIT = re.compile(r"[1-9][0-9]{0,17}")
"""A positive decimal number: no sign, and no leading 0 (the CLI would read 0100 as octal)."""
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
"""A container name as dockerd accepts it: no shell character can hide in one."""


def _touches_pids_of(text: str, name: str) -> bool:
    """Whether a command names container `name` and says `pids` besides (in any case)."""
    whole_name = re.compile(rf"(?<![a-zA-Z0-9_.-]){re.escape(name)}(?![a-zA-Z0-9_.-])")
    return bool(whole_name.search(text)) and "pids" in whole_name.sub("", text).lower()


def _mounts(props: Mapping[str, Any]) -> tuple[Mount, ...]:
    found: list[Mount] = []
    for v in _list(props.get("volumes")):
        v = _map(v)
        read_only = v.get("readOnly") is True
        if _str(v.get("hostPath")):
            found.append(
                Mount("bind", _str(v["hostPath"]), _str(v.get("containerPath")), read_only)
            )
        elif _str(v.get("volumeName")):
            found.append(
                Mount("volume", _str(v["volumeName"]), _str(v.get("containerPath")), read_only)
            )
    for m in _list(props.get("mounts")):
        m = _map(m)
        kind = (_str(m.get("type")) or "volume").strip().lower()
        target, read_only = _str(m.get("target")), m.get("readOnly") is True
        options = _map(m.get("volumeOptions"))
        device = local_bind_source(
            _str(options.get("driverName")),
            {k: _str(v) for k, v in _map(options.get("driverOptions")).items()},
        )
        if kind == "volume" and device is not None:
            # A local volume declared inline as a bind of a host path: judge the host path.
            found.append(Mount("bind", device, target, read_only, volume=_str(m.get("source"))))
        else:
            found.append(Mount(kind, _str(m.get("source")), target, read_only))
    found += [
        Mount("tmpfs", "", path, options=_str(options))
        for path, options in _map(props.get("tmpfs")).items()
    ]
    return tuple(found)


def _swap(value: Any) -> int | None:
    """memorySwap in bytes (MB in pulumi-docker; -1 stays -1); 0 when unset, None unknown."""
    if _unknown(value):
        return None
    swap = _int(value)
    return swap if swap < 0 else swap * _MB


def _device_requests(props: Mapping[str, Any]) -> tuple[str, ...]:
    found = [f"gpus {_str(props.get('gpus'))}"] if _str(props.get("gpus")) else []
    for request in _list(props.get("deviceRequests")):
        request = _map(request)
        parts = [
            f"driver {_str(request.get('driver')) or 'any'}",
            f"count {_int(request.get('count'))}" if request.get("count") is not None else "",
            f"devices {','.join(_strs(request.get('deviceIds')))}"
            if request.get("deviceIds")
            else "",
            f"capabilities {','.join(_strs(request.get('capabilities')))}"
            if request.get("capabilities")
            else "",
        ]
        found.append(" ".join(p for p in parts if p))
    return tuple(found)


def _quota(quota: Any, period: Any) -> float:
    # Docker's default CFS period is 100 ms.
    return _float(quota) / (_float(period) or 100_000) if _float(quota) > 0 else 0.0


def _labels(value: Any) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in _list(value):
        item = _map(item)
        # A value not known yet (preview) documents nothing, so it cannot exempt anything.
        labels[_str(item.get("label"))] = _str(item.get("value"))
    return labels


def _unknown(value: Any) -> bool:
    return isinstance(value, str) and value in _UNKNOWN_SENTINELS


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _str(value: Any) -> str:
    return "" if value is None or _unknown(value) else str(value)


def _strs(value: Any) -> list[str]:
    return [_str(v) for v in _list(value) if not _unknown(v)]


def _int(value: Any) -> int:
    return int(_float(value))


def _float(value: Any) -> float:
    if value is None or _unknown(value) or isinstance(value, bool):
        return 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0
