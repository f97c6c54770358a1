"""Rules over a whole stack (or everything one daemon runs): ownership, backups, networks,
replicas and host ports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts, PublishedPort, StackFacts
from .grants import TABLE_SETTING, grant_key, waivable
from .names import (
    BACKUP_LABEL,
    BACKUP_REASON_LABEL,
    COLOUR_LABEL,
    EXEMPT_LABEL,
    INTERNAL_SEGMENTS,
    MANAGED_BY_LABEL,
    MANAGED_BY_PROGRAM,
    SEGMENT_LABEL,
    SERVICE_LABEL,
    STACK_LABEL,
    STATELESS_LABEL,
)
from .rule import Subject, container_rule, stack_rule


@container_rule(
    id="unmanaged-container",
    title="Every container is declared by a stack through the platform's components",
    severity="medium",
    fix=(
        "declare it in the catalog so HardenedService builds it (labels napdms.managed-by and "
        "napdms.stack), or remove it from the host"
    ),
)
def unmanaged_container(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.labels.get(MANAGED_BY_LABEL) != MANAGED_BY_PROGRAM or not c.labels.get(STACK_LABEL):
        yield "no stack declares it, so no policy, backup or alert covers it"


@stack_rule(
    id="volume-backup-policy",
    title="Every volume is in the daily backup or excluded with a reason",
    severity="high",
    fix=(
        'label the volume napdms.backup "daily", or "exclude" with a napdms.backup.reason '
        "(the catalog's backup policy per volume)"
    ),
)
def volume_backup_policy(stack: StackFacts, _: Mapping[str, Any]) -> Iterable[tuple[Subject, str]]:
    declared = {v.name for v in stack.volumes}
    for volume in stack.volumes:
        policy = volume.labels.get(BACKUP_LABEL, "")
        if policy == "daily":
            continue
        if policy == "exclude":
            if not volume.labels.get(BACKUP_REASON_LABEL, "").strip():
                yield volume, "is excluded from backups without a napdms.backup.reason"
        elif not policy:
            yield volume, "has no backup policy: its data would be lost with the disk"
        else:
            yield volume, f'has backup policy "{policy}"; only "daily" and "exclude" exist'
    for container in stack.containers:
        for mount in container.mounts:
            if mount.kind == "volume" and mount.source and mount.source not in declared:
                yield (
                    container,
                    (
                        f"mounts volume {mount.source} at {mount.target}, "
                        "which no one declares (no backup policy)"
                    ),
                )


@stack_rule(
    id="data-network-internal",
    title="Data and monitoring networks are internal",
    severity="high",
    fix="set internal true on the network: databases and exporters need no route out",
)
def data_network_internal(stack: StackFacts, _: Mapping[str, Any]) -> Iterable[tuple[Subject, str]]:
    for network in stack.networks:
        segment = network.labels.get(SEGMENT_LABEL, "")
        if segment in INTERNAL_SEGMENTS and not network.internal:
            yield network, f"is a {segment} network with a route out of the host"


@stack_rule(
    id="stateless-replicas",
    title="Stateless services run enough replicas to survive one failing",
    severity="high",
    fix="raise the service's replicas in the stack file (services.<name>.replicas)",
    config_schema={"minReplicas": {"type": "integer", "minimum": 1}},
    defaults={"minReplicas": 2},
)
def stateless_replicas(
    stack: StackFacts, config: Mapping[str, Any]
) -> Iterable[tuple[Subject, str]]:
    minimum = int(config["minReplicas"])
    # Each colour of a blue-green service serves alone, so each counts on its own.
    replicas: dict[tuple[str, str, str], list[ContainerFacts]] = defaultdict(list)
    for container in stack.containers:
        if container.labels.get(STATELESS_LABEL) == "true":
            replicas[
                (
                    container.labels.get(STACK_LABEL, ""),
                    container.labels.get(SERVICE_LABEL, container.name),
                    container.labels.get(COLOUR_LABEL, ""),
                )
            ].append(container)
    for (_stack, service, colour), members in sorted(replicas.items()):
        if len(members) < minimum:
            which = f"service {service}" + (f" ({colour})" if colour else "")
            yield (
                members[0],
                f"{which} runs {len(members)} replica(s), fewer than {minimum}",
            )


@stack_rule(
    id="host-port-conflict",
    title="No two containers publish the same host port",
    severity="high",
    fix="give one of them another external port; the second container would fail to start",
)
def host_port_conflict(stack: StackFacts, _: Mapping[str, Any]) -> Iterable[tuple[Subject, str]]:
    seen: dict[tuple[str, str, int], list[tuple[ContainerFacts, PublishedPort]]] = defaultdict(list)
    for container in stack.containers:
        for port in container.ports:
            if port.host_port <= 0:
                continue  # Docker picks a free port
            key = (container.host, port.protocol, port.host_port)
            for other, other_port in seen[key]:
                if other.name != container.name and _overlap(port, other_port):
                    yield (
                        container,
                        (
                            f"publishes {port.host_port}/{port.protocol} "
                            f"on {port.host_ip or 'every interface'}, "
                            f"already published by {other.name}"
                        ),
                    )
            seen[key].append((container, port))


def _overlap(a: PublishedPort, b: PublishedPort) -> bool:
    return a.all_interfaces or b.all_interfaces or a.host_ip == b.host_ip


@stack_rule(
    id="unauthorised-exemption",
    title="Only the stack grants exemptions; a container cannot exempt itself",
    severity="critical",
    fix=(
        "remove the napdms.exempt.<rule> label, or add the exemption to the service's catalog "
        "entry and regenerate policies/config/<stack>.json with "
        "napdms-ops policy-config --stack <stack> --write"
    ),
    config_schema={
        TABLE_SETTING: {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    },
)
def unauthorised_exemption(
    stack: StackFacts, settings: Mapping[str, Any]
) -> Iterable[tuple[Subject, str]]:
    table: Mapping[str, Any] = settings.get(TABLE_SETTING) or {}
    for subject in (*stack.containers, *stack.volumes, *stack.networks):
        key = grant_key(subject.name)
        allowed = table.get(key) or {}
        for label in sorted(subject.labels):
            if not label.startswith(EXEMPT_LABEL):
                continue
            rule_id = label.removeprefix(EXEMPT_LABEL)
            if rule_id not in allowed:
                yield subject, f"carries {label}, but the stack grants {key} no such exemption"
            elif not waivable(rule_id, key):
                yield subject, f"carries {label}, and {rule_id} can never be waived in this stack"
