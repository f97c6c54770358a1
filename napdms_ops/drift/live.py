"""The live view of drift: the graph the program declares for a stack (run under mocks, as the
tests see it) against `docker inspect` of every container, volume and network on the stack's
daemons. Works everywhere: it needs neither the Pulumi CLI nor the stack's state.

What is compared and how each difference is classified: `napdms_ops.drift.compare`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from docker.errors import DockerException

from components.settings import SettingsError
from napdms_ops.declared import Program, declare_stack
from napdms_ops.drift import compare
from napdms_ops.drift.expected import HostExpectation, expected
from napdms_ops.drift.model import Finding
from napdms_ops.drift.observed import Observed, observe

CLIENT_TIMEOUT_S = 30


class LiveViewError(DockerException):
    """The live view cannot read a daemon of the stack (unreachable, no client given for a
    host); the one-line message names the stack, the host and the fix."""


@dataclass(frozen=True)
class LiveView:
    """What the live view found, and how much it read."""

    findings: list[Finding]
    containers: int
    """Containers inspected on the stack's daemons (every one, to find the unmanaged)."""
    volumes: int
    networks: int


def live_view(
    stack: str,
    clients: Mapping[str, Any] | None = None,
    image_of: Callable[[str], str] | None = None,
    *,
    program: Program | None = None,
) -> LiveView:
    """Compare what `stack` declares with what its daemons run.

    `clients`: a `docker.DockerClient` per host name of the stack (default: one per host
    endpoint of the stack settings, DOCKER_HOST or the local socket where none is set).
    `image_of` maps a declared image reference to the local reference to compare with (the live
    tests use stand-ins; default identity). `program`: the declared graph when the caller has
    already run it (default: `Pulumi.<stack>.yaml` under mocks)."""
    if program is None:
        program = _declare(stack)
    hosts = expected(program)
    image_of = image_of or str
    owned = clients is None
    clients = dict(clients) if clients is not None else _connect(stack, hosts)
    missing = sorted(set(hosts) - set(clients))
    if missing:
        raise LiveViewError(
            f"{stack}: no Docker client for host {', '.join(missing)}; pass one per host of the "
            "stack's settings"
        )
    groups = _by_daemon(hosts, clients)
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            reads = {
                key: pool.submit(_read, stack, names, hosts, clients[names[0]], image_of)
                for key, names in groups.items()
            }
            observed = {key: read.result() for key, read in reads.items()}
    finally:
        if owned:
            for client in clients.values():
                client.close()
    findings: list[Finding] = []
    for key, names in groups.items():
        findings += host_findings(stack, names, hosts, observed[key], image_of)
    return LiveView(
        findings=findings,
        containers=sum(len(o.containers) for o in observed.values()),
        volumes=sum(len(o.volumes) for o in observed.values()),
        networks=sum(len(o.networks) for o in observed.values()),
    )


def _declare(stack: str) -> Program:
    """The stack file under mocks; its settings errors as `SettingsError`, one line each (the
    program stops on them with those lines before it declares anything)."""
    import pulumi

    try:
        return declare_stack(stack)
    except pulumi.RunError as error:
        raise SettingsError(str(error).splitlines()) from None


def _connect(stack: str, hosts: Mapping[str, HostExpectation]) -> dict[str, Any]:
    """One client per endpoint, shared by the hosts on it."""
    import docker

    by_endpoint: dict[str, Any] = {}
    clients = {}
    for name, host in hosts.items():
        endpoint = host.endpoint
        if endpoint not in by_endpoint:
            try:
                # No endpoint: DOCKER_HOST, else the local socket, as the provider does; ssh://
                # through the system ssh client (its config, agent and known hosts).
                by_endpoint[endpoint] = (
                    docker.DockerClient(
                        base_url=endpoint,
                        timeout=CLIENT_TIMEOUT_S,
                        use_ssh_client=endpoint.startswith("ssh://"),
                    )
                    if endpoint
                    else docker.from_env(timeout=CLIENT_TIMEOUT_S)
                )
            except Exception as error:  # DockerException, or requests' for a malformed endpoint
                reason = " ".join(str(error).split()) or type(error).__name__
                raise LiveViewError(
                    f"{stack}: host {name}: cannot connect to {endpoint or 'DOCKER_HOST'} "
                    f"({reason}); start the daemon, or point the host's docker_host in "
                    f"Pulumi.{stack}.yaml (DOCKER_HOST when it has none) at it"
                ) from None
        clients[name] = by_endpoint[endpoint]
    return clients


def _by_daemon(
    hosts: Mapping[str, HostExpectation], clients: Mapping[str, Any]
) -> dict[int, list[str]]:
    """Host names grouped by the client that reads them: hosts sharing a daemon are read once
    and judged together (one host's container is not unmanaged on the other)."""
    groups: dict[int, list[str]] = {}
    for name in sorted(hosts):
        groups.setdefault(id(clients[name]), []).append(name)
    return groups


def _read(
    stack: str,
    names: list[str],
    hosts: Mapping[str, HostExpectation],
    client: Any,
    image_of: Callable[[str], str],
) -> Observed:
    refs = {image_of(c.image_ref) for n in names for c in hosts[n].containers.values()}
    try:
        return observe(client, refs)
    except Exception as error:  # DockerException, requests' errors, a dropped ssh connection
        reason = " ".join(str(error).split()) or type(error).__name__
        raise LiveViewError(
            f"{stack}: host {', '.join(names)}: cannot read its Docker daemon ({reason}); start "
            f"the daemon, or point the host's docker_host in Pulumi.{stack}.yaml (DOCKER_HOST "
            "when it has none) at it"
        ) from None


def host_findings(
    stack: str,
    names: list[str],
    expectations: Mapping[str, HostExpectation],
    observed: Observed,
    image_of: Callable[[str], str],
) -> list[Finding]:
    """Everything declared on the hosts `names` (one daemon) against what it has."""
    hosts = [expectations[name] for name in names]
    findings: list[Finding] = []
    for host in hosts:
        for name, want in sorted(host.containers.items()):
            findings += compare.container_findings(
                stack, want, observed.containers.get(name), observed, image_of
            )
        for name, want in sorted(host.volumes.items()):
            findings += compare.object_findings(stack, "volume", want, observed.volumes.get(name))
        for name, want in sorted(host.networks.items()):
            findings += compare.object_findings(stack, "network", want, observed.networks.get(name))
    findings += compare.unmanaged_findings(
        stack,
        ", ".join(names),
        observed,
        [name for h in hosts for name in h.containers],
        [name for h in hosts for name in h.networks],
        [name for h in hosts for name in h.volumes],
    )
    return findings
