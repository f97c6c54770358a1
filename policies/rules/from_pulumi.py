"""Facts from the properties of pulumi-docker resources, as the engine hands them to a policy.

Property names are the engine's camelCase (`readOnly`, `securityOpts`, `logOpts`);
pulumi-docker gives memory in MB and cpus as a string. During preview some values are not known
yet (the image digest of a pull that has not happened): those arrive as Pulumi's unknown sentinels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .facts import (
    ContainerFacts,
    Mount,
    NetworkFacts,
    PublishedPort,
    VolumeFacts,
    normalize_capability,
    split_env,
)

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
NETWORK = "docker:index/network:Network"

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
        privileged=props.get("privileged") is True,
        cap_add=tuple(normalize_capability(c) for c in _strs(caps.get("adds"))),
        cap_drop=tuple(normalize_capability(c) for c in _strs(caps.get("drops"))),
        memory_bytes=_int(props.get("memory")) * _MB,
        cpus=_float(props.get("cpus")) or _quota(props.get("cpuQuota"), props.get("cpuPeriod")),
        cpu_shares=_int(props.get("cpuShares")),
        pids_limit=_nproc(props.get("ulimits")),
        health_test=tuple(_strs(health.get("tests"))),
        read_only_root=props.get("readOnly") is True,
        security_opts=tuple(_strs(props.get("securityOpts"))),
        mounts=_mounts(props),
        network_mode=_str(props.get("networkMode")),
        pid_mode=_str(props.get("pidMode")),
        ipc_mode=_str(props.get("ipcMode")),
        uts_mode=_str(props.get("utsMode")),
        userns_mode=_str(props.get("usernsMode")),
        devices=tuple(_str(_map(d).get("hostPath")) for d in _list(props.get("devices"))),
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
        name=_str(props.get("name")) or name, labels=_labels(props.get("labels")), host=host
    )


def network(props: Mapping[str, Any], name: str, host: str = "") -> NetworkFacts:
    """Facts of a `docker.Network`."""
    return NetworkFacts(
        name=_str(props.get("name")) or name,
        internal=props.get("internal") is True,
        labels=_labels(props.get("labels")),
        host=host,
    )


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
        found.append(
            Mount(
                _str(m.get("type")) or "volume",
                _str(m.get("source")),
                _str(m.get("target")),
                m.get("readOnly") is True,
            )
        )
    found += [Mount("tmpfs", "", path) for path in _map(props.get("tmpfs"))]
    return tuple(found)


def _quota(quota: Any, period: Any) -> float:
    # Docker's default CFS period is 100 ms.
    return _float(quota) / (_float(period) or 100_000) if _float(quota) > 0 else 0.0


def _nproc(ulimits: Any) -> int:
    for limit in _list(ulimits):
        limit = _map(limit)
        if _str(limit.get("name")) == "nproc":
            return _int(limit.get("hard"))
    return 0


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
