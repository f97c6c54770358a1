"""The platform's shared vocabulary: every `napdms.*` label key and the network segments.

The components write these names, the policy rules and the audit read them, the ops CLI looks
containers up by them. One definition here, imported everywhere: a typo in a second spelling
would silently drop an exemption or lose the backup agent. Standard library only, so the policy
pack (which runs without the program's dependencies) can import it.
"""

from __future__ import annotations

from typing import Literal

LABEL_PREFIX = "napdms."
"""Every label the platform writes starts with this."""

MANAGED_BY_LABEL = "napdms.managed-by"
"""Who created the object: `pulumi` (the program) or `napdms-ops` (restore and drill jobs)."""
STACK_LABEL = "napdms.stack"
SERVICE_LABEL = "napdms.service"
HOST_LABEL = "napdms.host"
"""Host name (key of the stack's `hosts`) the object was declared for."""
REPLICA_LABEL = "napdms.replica"
ROLE_LABEL = "napdms.role"
"""`init` marks the one-shot init containers."""
INIT_ROLE = "init"
INIT_CONTAINER_LABEL = "napdms.init-container"
"""The id of the init container that wrote a service's files: a new one replaces the service."""
STATELESS_LABEL = "napdms.stateless"
COLOUR_LABEL = "napdms.colour"
"""`blue` or `green`: which of a stateless service's two sets of replicas (blue-green deploys)
the container belongs to."""
SEGMENT_LABEL = "napdms.segment"
BACKUP_LABEL = "napdms.backup"
"""Volumes: `daily` or `exclude`; containers: `<volume>:<policy>,...`."""
BACKUP_REASON_LABEL = "napdms.backup.reason"
PIDS_LIMIT_LABEL = "napdms.pids-limit"
"""The PIDs limit the program declares, as a record; its `docker update --pids-limit` command sets
the real one (HostConfig.PidsLimit), which is what the pack and the audit check."""
RESTORE_LABEL = "napdms.restore"
"""Volumes a restore job created."""
JOB_LABEL = "napdms.job"
"""The ops CLI's one-shot jobs: the agent command they run (`restore`, `drill`)."""
EXEMPT_LABEL = "napdms.exempt."
"""Prefix of the label that exempts its carrier from one rule:
`napdms.exempt.<rule-id>: <reason>`."""
CAP_ADD_LABEL = "napdms.cap-add."
"""Prefix of the label that documents one added capability: `napdms.cap-add.<CAP>: <reason>`."""

MANAGED_BY_PROGRAM = "pulumi"
MANAGED_BY_OPS = "napdms-ops"


def exempt_label(rule_id: str) -> str:
    """The label key that records an exemption from `rule_id`."""
    return EXEMPT_LABEL + rule_id


def cap_add_label(capability: str) -> str:
    """The label key that documents why `capability` is added."""
    return CAP_ADD_LABEL + capability


def object_prefix(stack: str) -> str:
    """The prefix of every Docker object name of `stack` (containers, volumes, networks), so
    stacks sharing a daemon never collide."""
    return f"napdms-{stack}"


Segment = Literal["edge", "app", "data", "chat", "monitoring"]
"""The network segments, in the order networks are declared. `chat` is Rocket.Chat's MongoDB
alone with its two clients (Rocket.Chat and the backup agent), apart from the `data` network that
other applications (n8n runs user-written workflows) share."""
SEGMENTS: tuple[Segment, ...] = ("edge", "app", "data", "chat", "monitoring")
INTERNAL_SEGMENTS: frozenset[str] = frozenset({"data", "chat", "monitoring"})
"""Segments with no route out of the host: databases and metrics never talk to the internet."""
