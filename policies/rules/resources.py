"""What a container may consume: memory, CPU and processes (PIDs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts, StackFacts
from .rule import Subject, container_rule, stack_rule


@container_rule(
    id="no-memory-limit",
    title="Containers have a memory limit",
    severity="high",
    cis="5.11",
    fix="set memory (MB) and memory_swap to the same value (the catalog's memory, per stack)",
)
def no_memory_limit(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.memory_bytes <= 0:
        yield "no memory limit: one leak can push the whole NAS into swap or the OOM killer"


@container_rule(
    id="memory-swap",
    title="Containers cannot swap: memory_swap equals memory",
    severity="medium",
    cis="5.11",
    fix=(
        "set memory_swap to the same value as memory (HardenedService does); unset, Docker "
        "allows as much swap again, and -1 allows all of it"
    ),
)
def memory_swap(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    swap, memory = c.memory_swap_bytes, c.memory_bytes
    if swap is None or memory <= 0:
        return  # not known yet, or no memory limit at all (no-memory-limit says so)
    if swap < 0:
        yield "memory_swap -1: the container may swap without limit and slow the whole NAS"
    elif swap == 0:
        yield "memory_swap unset: Docker lets the container swap as much again as its memory"
    elif swap > memory:
        yield (
            f"memory_swap {swap // 2**20} MB above memory {memory // 2**20} MB: "
            f"{(swap - memory) // 2**20} MB of swap"
        )


@container_rule(
    id="no-cpu-limit",
    title="Containers have a CPU limit",
    severity="medium",
    cis="5.12",
    fix='set cpus (e.g. "0.5")',
)
def no_cpu_limit(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.cpus <= 0:
        if c.cpu_shares > 0:
            yield (
                f"only cpu_shares ({c.cpu_shares}), a relative weight: "
                "a busy container still takes every core"
            )
        else:
            yield "no CPU limit: a runaway process starves every other service on the host"


@stack_rule(
    id="no-pids-limit",
    title="Containers have a PIDs limit",
    severity="medium",
    cis="5.29",
    fix=(
        "give the container a PIDs cgroup limit (HostConfig.PidsLimit): pulumi-docker 5.x has no "
        "field for it, so declare a pulumi-command Command whose create is exactly `docker update "
        "--pids-limit <N> <container name>` on the container's host, triggered by the container's "
        "id (HardenedService does); the nproc ulimit is no substitute"
    ),
)
def no_pids_limit(stack: StackFacts, _: Mapping[str, Any]) -> Iterable[tuple[Subject, str]]:
    # A stack rule: a declared container's limit is not among its own properties but set by a
    # command beside it, which the pack attaches (`from_pulumi.pids_limits_from_commands`); a
    # live container's is HostConfig.PidsLimit.
    for container in stack.containers:
        if container.pids_limit <= 0:
            yield container, "no PIDs limit: a fork bomb takes the host's process table"
