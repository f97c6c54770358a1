"""A Docker daemon the platform deploys to, and the networks the platform keeps on it."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.settings.model import HostSettings
from policies.rules.names import (
    INTERNAL_SEGMENTS,
    MANAGED_BY_LABEL,
    MANAGED_BY_PROGRAM,
    SEGMENT_LABEL,
    Segment,
)

INIT_IMAGE = "docker.io/library/busybox:1.37.0"
"""The one-shot init containers' image (chown of root-owned volume directories)."""


class DockerHost(pulumi.ComponentResource):
    """One NAS (or the local daemon): its provider, its segmented networks, its init image."""

    provider: docker.Provider
    """Every resource on this host is created through this provider."""
    networks: dict[str, docker.Network]
    """Network per segment, only for the segments some service on this host joins."""
    init_image: pulumi.Output[str]
    """Digest reference of the init containers' image on this host."""

    def __init__(
        self,
        name: str,
        host: HostSettings,
        segments: list[Segment],
        name_prefix: str,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("napdms:hosts:DockerHost", name, None, opts)
        self.provider = docker.Provider(
            f"{name}-docker",
            host=host.docker_host,
            ssh_opts=host.ssh_opts or None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_host = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.networks = {
            segment: docker.Network(
                f"{name}-{segment}",
                name=f"{name_prefix}-{segment}",
                driver="bridge",
                internal=segment in INTERNAL_SEGMENTS,
                labels=[
                    docker.NetworkLabelArgs(label=SEGMENT_LABEL, value=segment),
                    docker.NetworkLabelArgs(label=MANAGED_BY_LABEL, value=MANAGED_BY_PROGRAM),
                ],
                opts=on_host,
            )
            for segment in segments
        }
        image = docker.RemoteImage(
            f"{name}-init-image", name=INIT_IMAGE, keep_locally=True, opts=on_host
        )
        self.init_image = image.repo_digest
        self.register_outputs({"init_image": self.init_image})
