"""What one Docker daemon has: `docker inspect` of every container (all states), its volumes and
networks, and the images the comparison needs, read concurrently as the runtime audit reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

INSPECT_WORKERS = 8
"""Concurrent Engine API calls, as `napdms-ops audit` makes them: enough to hide the round trips,
small enough for a NAS daemon and within the SDK's connection pool (10)."""


@dataclass
class Observed:
    """One daemon, as read."""

    containers: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Container name (without the leading `/`) -> its inspect document."""
    volumes: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    networks: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    image_ids: dict[str, str | None] = field(default_factory=dict)
    """Local image reference -> the daemon's image id; None when the daemon does not have it."""
    images: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """Image id of every container -> that image's `Config` (its own ENV, labels, volumes,
    health check, which the daemon merges into the container's)."""


def observe(client, refs: Iterable[str]) -> Observed:
    """Read the daemon behind `client` (a `docker.DockerClient`): every container, volume and
    network, the id of each image reference in `refs`, and the config of every image a container
    runs. Raises the SDK's error when the daemon cannot be read."""
    from docker.errors import ImageNotFound, NotFound

    api = client.api
    observed = Observed()

    def inspect(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
        try:
            return api.inspect_container(summary["Id"])
        except NotFound:
            return None  # removed between the listing and the inspect

    def image(ref: str) -> Mapping[str, Any] | None:
        try:
            return api.inspect_image(ref)
        except (ImageNotFound, NotFound):
            return None

    with ThreadPoolExecutor(max_workers=INSPECT_WORKERS) as pool:
        listed = pool.submit(api.containers, all=True)
        volumes = pool.submit(api.volumes)
        networks = pool.submit(api.networks)
        wanted = sorted(set(refs))
        declared_images = pool.map(image, wanted)
        docs = [doc for doc in pool.map(inspect, listed.result()) if doc is not None]
        observed.image_ids = {
            ref: (doc or {}).get("Id") for ref, doc in zip(wanted, declared_images, strict=True)
        }
        running = sorted({doc["Image"] for doc in docs})
        configs = pool.map(image, running)
        observed.images = {
            image_id: (doc or {}).get("Config") or {}
            for image_id, doc in zip(running, configs, strict=True)
        }
        observed.volumes = {v["Name"]: v for v in (volumes.result() or {}).get("Volumes") or ()}
        observed.networks = {n["Name"]: n for n in networks.result()}
    observed.containers = {doc["Name"].lstrip("/"): doc for doc in docs}
    return observed
