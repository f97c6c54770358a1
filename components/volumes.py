"""Named volumes, each labelled with its backup policy so the agent and the audit can read it."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_docker as docker

from components.model.spec import BackupPolicy
from policies.rules.names import BACKUP_LABEL, BACKUP_REASON_LABEL

REGENERATED = BackupPolicy(policy="exclude", reason="regenerated from Pulumi state on every deploy")
"""Policy of the secrets and config volumes: their content is re-uploaded by every `up`."""


def volume_labels(policy: BackupPolicy, base: Mapping[str, str]) -> dict[str, str]:
    """Labels naming the owner and the backup policy (and the reason for an exclusion)."""
    labels = {**base, BACKUP_LABEL: policy.policy}
    if policy.reason:
        labels[BACKUP_REASON_LABEL] = policy.reason
    return labels


def declare_volume(
    resource_name: str,
    docker_name: str,
    policy: BackupPolicy,
    base_labels: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    protect: bool = False,
) -> docker.Volume:
    """A local named volume; `protect` keeps a `destroy` or a removed service from deleting data."""
    labels = volume_labels(policy, base_labels)
    return docker.Volume(
        resource_name,
        name=docker_name,
        driver="local",
        labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=protect)),
    )
