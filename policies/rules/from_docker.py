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
    local_bind_source,
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
        group_add=tuple(str(g) for g in hc.get("GroupAdd") or ()),
        privileged=bool(hc.get("Privileged")),
        cap_add=tuple(normalize_capability(c) for c in hc.get("CapAdd") or ()),
        cap_drop=tuple(normalize_capability(c) for c in hc.get("CapDrop") or ()),
        memory_bytes=int(hc.get("Memory") or 0),
        memory_swap_bytes=int(hc.get("MemorySwap") or 0),
        cpus=_cpus(hc),
        cpu_shares=int(hc.get("CpuShares") or 0),
        pids_limit=_pids(hc),
        health_test=tuple((config.get("Healthcheck") or {}).get("Test") or ()),
        read_only_root=bool(hc.get("ReadonlyRootfs")),
        security_opts=_security_opts(hc),
        mounts=_mounts(inspect, hc),
        volumes_from=tuple(hc.get("VolumesFrom") or ()),
        network_mode=hc.get("NetworkMode") or "",
        pid_mode=hc.get("PidMode") or "",
        ipc_mode=hc.get("IpcMode") or "",
        uts_mode=hc.get("UTSMode") or "",
        userns_mode=hc.get("UsernsMode") or "",
        cgroupns_mode=hc.get("CgroupnsMode") or "",
        runtime=hc.get("Runtime") or "",
        devices=tuple(d.get("PathOnHost", "") for d in hc.get("Devices") or ()),
        device_requests=tuple(_device_request(r) for r in hc.get("DeviceRequests") or ()),
        device_cgroup_rules=tuple(hc.get("DeviceCgroupRules") or ()),
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
    """Facts of one volume from `GET /volumes/{name}` (or an entry of `GET /volumes`)."""
    return VolumeFacts(
        name=inspect.get("Name", ""),
        labels=dict(inspect.get("Labels") or {}),
        host=host,
        driver=inspect.get("Driver") or "",
        options={str(k): str(v) for k, v in (inspect.get("Options") or {}).items()},
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
    # The cgroup limit only: 0 and -1 mean unlimited, and an nproc ulimit (per uid across the
    # host, not enforced for uid 0) is no PIDs limit (CIS 5.29).
    limit = hc.get("PidsLimit") or 0
    return int(limit) if isinstance(limit, int) and limit > 0 else 0


def _security_opts(hc: Mapping[str, Any]) -> tuple[str, ...]:
    opts = tuple(hc.get("SecurityOpt") or ())
    # The daemon does not keep systempaths=unconfined among the options: it empties the lists
    # of masked and read-only paths instead (both null for a privileged container).
    if hc.get("MaskedPaths") == [] or hc.get("ReadonlyPaths") == []:
        opts += ("systempaths=unconfined",)
    return opts


def _mounts(inspect: Mapping[str, Any], hc: Mapping[str, Any]) -> tuple[Mount, ...]:
    # What was asked for (`--mount`): a volume's inline driver options, a tmpfs's options.
    specs = {str(m.get("Target", "")): m for m in hc.get("Mounts") or ()}
    found: list[Mount] = []
    for m in inspect.get("Mounts") or ():
        kind, target = m.get("Type", ""), m.get("Destination", "")
        spec = specs.get(target) or {}
        driver = (spec.get("VolumeOptions") or {}).get("DriverConfig") or {}
        device = local_bind_source(driver.get("Name") or "", driver.get("Options") or {})
        read_only = not m.get("RW", True)
        if kind == "volume" and device is not None:
            # A local volume made a bind of a host path by its inline options: judge the path.
            found.append(Mount("bind", device, target, read_only, volume=m.get("Name", "")))
        elif kind == "tmpfs":
            flags = (spec.get("TmpfsOptions") or {}).get("Options") or ()
            options = ",".join("=".join(str(part) for part in flag) for flag in flags)
            found.append(Mount("tmpfs", "", target, read_only, options=options))
        else:
            # For a volume Source is its folder under the data root; the rules want its name.
            source = m.get("Name", "") if kind == "volume" else m.get("Source", "")
            found.append(Mount(kind, source, target, read_only))
    found += [
        Mount("tmpfs", "", path, options=options or "")
        for path, options in (hc.get("Tmpfs") or {}).items()
    ]
    return tuple(found)


def _device_request(request: Mapping[str, Any]) -> str:
    capabilities = ",".join("+".join(c) for c in request.get("Capabilities") or ())
    parts = [
        f"driver {request.get('Driver') or 'any'}",
        f"count {request.get('Count')}" if request.get("Count") else "",
        f"devices {','.join(request.get('DeviceIDs') or ())}" if request.get("DeviceIDs") else "",
        f"capabilities {capabilities}" if capabilities else "",
    ]
    return " ".join(p for p in parts if p)


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
