"""What the live view expects on each host: the declared graph (the program run under mocks)
reduced to what `docker inspect` can show.

Container settings go through the policy pack's own reader (`policies.rules.from_pulumi`), so
the live view normalises capabilities, mounts, ports and limits exactly as the pack and the audit
do. The PIDs limit comes from the stack's `docker update --pids-limit` commands (pulumi-docker has
no field for it), read the way the pack reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from components.model.units import duration_seconds
from napdms_ops.declared import Declared, Program, labels_of, mock_repo_digest
from policies.rules import from_pulumi
from policies.rules.facts import ContainerFacts
from policies.rules.names import INIT_ROLE, ROLE_LABEL

PROVIDER = "pulumi:providers:docker"
BUILT_IMAGE = "docker:index/image:Image"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
_NS = 1_000_000_000


@dataclass(frozen=True)
class Health:
    """A declared health check, in the units `docker inspect` reports (nanoseconds)."""

    test: tuple[str, ...]
    interval_ns: int
    timeout_ns: int
    retries: int
    start_period_ns: int


@dataclass(frozen=True)
class ExpectedContainer:
    """One declared container, as `docker inspect` should show it."""

    name: str
    """The Docker name (`napdms-<stack>-<service>-<n>`)."""
    host: str
    facts: ContainerFacts
    image_ref: str
    """The reference the program pins: its RemoteImage's `name`, or for an image the program
    builds, its `imageName` (the container itself gets the pulled digest or the build's id)."""
    networks: Mapping[str, tuple[str, ...]]
    """Network name -> sorted aliases; `networkMode` alone (e.g. `none`) is one entry."""
    pids_limit: int
    """0: none declared."""
    health: Health | None
    computed_labels: frozenset[str] = frozenset()
    """Labels whose value another resource computes at `up` (e.g. the init container's id):
    under mocks it is a placeholder, so only their presence is compared."""
    init: bool = False
    """A one-shot init container: it runs once and exits 0."""


@dataclass(frozen=True)
class ExpectedObject:
    """A declared volume or network."""

    name: str
    host: str
    labels: Mapping[str, str]
    internal: bool = False
    """Networks only: no route out of the host."""


@dataclass
class HostExpectation:
    """Everything declared on one host, and the Docker endpoint its provider uses."""

    endpoint: str
    """The provider's `host` ("" means DOCKER_HOST or the local socket)."""
    containers: dict[str, ExpectedContainer] = field(default_factory=dict)
    volumes: dict[str, ExpectedObject] = field(default_factory=dict)
    networks: dict[str, ExpectedObject] = field(default_factory=dict)


def expected(program: Program) -> dict[str, HostExpectation]:
    """What each host (by the stack's host name) should run, from one run of the program."""
    hosts = {
        _host_name(program, provider.urn): HostExpectation(provider.plain("host") or "")
        for provider in program.of_type(PROVIDER)
    }
    pids = from_pulumi.pids_limits_from_commands(
        _plain(c) for c in program.of_type(from_pulumi.COMMAND)
    )
    # Under mocks a resource's id is "<name>-id": a label holding one is computed at `up`.
    mock_ids = {f"{r.name}-id" for r in program.resources}
    for declared in program.containers():
        host = _host_of(program, declared)
        container = _container(program, declared, host, mock_ids)
        limit = pids.get((hosts[host].endpoint, container.name), 0)
        hosts[host].containers[container.name] = replace(container, pids_limit=limit)
    for volume in program.of_type(from_pulumi.VOLUME):
        host = _host_of(program, volume)
        hosts[host].volumes[volume.plain("name")] = ExpectedObject(
            volume.plain("name"), host, labels_of(volume)
        )
    for network in program.of_type(from_pulumi.NETWORK):
        host = _host_of(program, network)
        hosts[host].networks[network.plain("name")] = ExpectedObject(
            network.plain("name"), host, labels_of(network), bool(network.plain("internal"))
        )
    return hosts


def _plain(resource: Declared) -> dict[str, Any]:
    return {key: resource.plain(key) for key in resource.inputs}


def _host_name(program: Program, provider_urn: str) -> str:
    """The stack's name of the host a provider serves: its parent `DockerHost`'s name."""
    return program.by_urn(program.by_urn(provider_urn).parent).name


def _host_of(program: Program, resource: Declared) -> str:
    # A provider reference is "<provider urn>::<provider id>".
    return _host_name(program, resource.provider.rsplit("::", 1)[0])


def _container(
    program: Program, declared: Declared, host: str, mock_ids: set[str]
) -> ExpectedContainer:
    props = _plain(declared)
    facts = from_pulumi.container(props, declared.name, host)
    labels = labels_of(declared)
    joined = props.get("networksAdvanced") or ()
    networks = {n["name"]: tuple(sorted(n.get("aliases") or ())) for n in joined}
    return ExpectedContainer(
        name=facts.name,
        host=host,
        facts=facts,
        image_ref=_image_ref(program, declared),
        networks=networks or {props.get("networkMode") or "bridge": ()},
        pids_limit=0,
        health=_health(props.get("healthcheck")),
        computed_labels=frozenset(k for k, v in labels.items() if v in mock_ids),
        init=labels.get(ROLE_LABEL) == INIT_ROLE,
    )


def _image_ref(program: Program, declared: Declared) -> str:
    """The reference the program pins: a container gets the `repoDigest` of a RemoteImage (the
    registry's, known at `up`; under mocks a stand-in) or the id of an image the program builds,
    so the reference is that RemoteImage's `name` or that build's `imageName`."""
    image = declared.plain("image")
    for urn in declared.dependencies:
        source = program.by_urn(urn)
        if source.type == REMOTE_IMAGE and mock_repo_digest(source.plain("name")) == image:
            return source.plain("name")
        if source.type == BUILT_IMAGE and image.startswith("sha256:"):
            return source.plain("imageName")
    return image


def _health(health: Mapping[str, Any] | None) -> Health | None:
    if not health:
        return None
    return Health(
        test=tuple(health.get("tests") or ()),
        interval_ns=_ns(health.get("interval")),
        timeout_ns=_ns(health.get("timeout")),
        retries=int(health.get("retries") or 0),
        start_period_ns=_ns(health.get("startPeriod")),
    )


def _ns(duration: str | None) -> int:
    return int(duration_seconds(duration) * _NS) if duration else 0
