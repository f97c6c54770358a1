"""What a container may consume: memory, CPU and processes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts
from .rule import container_rule


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


@container_rule(
    id="no-pids-limit",
    title="Containers have a process limit",
    severity="medium",
    cis="5.29",
    fix=(
        "set a pids limit, or the nproc ulimit where the tool has no pids field (pulumi-docker 5.x)"
    ),
)
def no_pids_limit(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.pids_limit <= 0:
        yield "no process limit: a fork bomb takes the host's process table"
