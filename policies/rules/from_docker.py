"""Facts from a live daemon: the JSON of `docker inspect` (Engine API `GET /containers/{id}/json`).

The daemon merges the image's settings into `Config`, so an image's USER, HEALTHCHECK and ENV
show up here even when whoever started the container did not set them.
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


def container(inspect: Mapping[str, Any], host: str = "") -> ContainerFacts:
    """Facts of one container from its inspect document."""
    config = inspect.get("Config") or {}
    hc = inspect.get("HostConfig") or {}
    restart = hc.get("RestartPolicy") or {}
    log = hc.get("LogConfig") or {}
    return ContainerFacts(
        name=(inspect.get("Name") or "").lstrip("/") or str(inspect.get("Id", ""))[:12],
        labels=dict(config.get("Labels") or {}),
        image=config.get("Image") or "",
        user=config.get("User") or "",
        privileged=bool(hc.get("Privileged")),
        cap_add=tuple(normalize_capability(c) for c in hc.get("CapAdd") or ()),
        cap_drop=tuple(normalize_capability(c) for c in hc.get("CapDrop") or ()),
        memory_bytes=int(hc.get("Memory") or 0),
        cpus=_cpus(hc),
        cpu_shares=int(hc.get("CpuShares") or 0),
        pids_limit=_pids(hc),
        health_test=tuple((config.get("Healthcheck") or {}).get("Test") or ()),
        read_only_root=bool(hc.get("ReadonlyRootfs")),
        security_opts=tuple(hc.get("SecurityOpt") or ()),
        mounts=_mounts(inspect, hc),
        network_mode=hc.get("NetworkMode") or "",
        pid_mode=hc.get("PidMode") or "",
        ipc_mode=hc.get("IpcMode") or "",
        uts_mode=hc.get("UTSMode") or "",
        userns_mode=hc.get("UsernsMode") or "",
        devices=tuple(d.get("PathOnHost", "") for d in hc.get("Devices") or ()),
        ports=_ports(hc.get("PortBindings") or {}),
        publish_all=bool(hc.get("PublishAllPorts")),
        env=tuple(split_env(e) for e in config.get("Env") or ()),
        restart=restart.get("Name") or "",
        max_retries=int(restart.get("MaximumRetryCount") or 0),
        log_driver=log.get("Type") or "",
        log_opts=dict(log.get("Config") or {}),
        host=host,
    )


def volume(inspect: Mapping[str, Any], host: str = "") -> VolumeFacts:
    """Facts of one volume from `GET /volumes/{name}`."""
    return VolumeFacts(
        name=inspect.get("Name", ""), labels=dict(inspect.get("Labels") or {}), host=host
    )


def network(inspect: Mapping[str, Any], host: str = "") -> NetworkFacts:
    """Facts of one network from `GET /networks/{id}`."""
    return NetworkFacts(
        name=inspect.get("Name", ""),
        internal=bool(inspect.get("Internal")),
        labels=dict(inspect.get("Labels") or {}),
        host=host,
    )


def _cpus(hc: Mapping[str, Any]) -> float:
    if hc.get("NanoCpus"):
        return int(hc["NanoCpus"]) / 1e9
    quota, period = int(hc.get("CpuQuota") or 0), int(hc.get("CpuPeriod") or 0)
    if quota > 0:
        return quota / (period or 100_000)
    return 0.0


def _pids(hc: Mapping[str, Any]) -> int:
    if (hc.get("PidsLimit") or 0) > 0:
        return int(hc["PidsLimit"])
    for limit in hc.get("Ulimits") or ():
        if limit.get("Name") == "nproc":
            return int(limit.get("Hard") or 0)
    return 0


def _mounts(inspect: Mapping[str, Any], hc: Mapping[str, Any]) -> tuple[Mount, ...]:
    found = [
        Mount(
            kind=m.get("Type", ""),
            # For a volume Source is its folder under the data root; the rules want its name.
            source=m.get("Name", "") if m.get("Type") == "volume" else m.get("Source", ""),
            target=m.get("Destination", ""),
            read_only=not m.get("RW", True),
        )
        for m in inspect.get("Mounts") or ()
    ]
    found += [Mount("tmpfs", "", path) for path in (hc.get("Tmpfs") or {})]
    return tuple(found)


def _ports(bindings: Mapping[str, Any]) -> tuple[PublishedPort, ...]:
    ports: list[PublishedPort] = []
    for spec, hosts in sorted(bindings.items()):
        number, _sep, protocol = spec.partition("/")
        for binding in hosts or ():
            ports.append(
                PublishedPort(
                    host_ip=binding.get("HostIp") or "",
                    host_port=int(binding.get("HostPort") or 0),
                    container_port=int(number),
                    protocol=protocol or "tcp",
                )
            )
    return tuple(ports)
