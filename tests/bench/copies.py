"""The containers a benchmark starts in bulk carry a label with its run's id; this removes them
all at the end, also those a crashed earlier step left half made."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import NotFound

WORKERS = 8
"""Concurrent removals: enough to hide the round trips, few enough for the daemon."""


def remove_labelled(client: docker.DockerClient, label: str, value: str) -> int:
    """Force-remove every container whose `label` is `value`; how many there were."""
    mine = client.containers.list(all=True, filters={"label": f"{label}={value}"})

    def one(container) -> None:
        try:
            container.remove(force=True)
        except NotFound:
            pass

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        list(pool.map(one, mine))
    return len(mine)
