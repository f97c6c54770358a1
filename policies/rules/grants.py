"""Exemptions are granted by the stack, never by the container.

A container records an exception with a label (`napdms.exempt.<rule-id>: <reason>`), but the
label alone waives nothing: the stack's policy config (`policies/config/<stack>.json`, generated
from the catalog by `napdms-ops policy-config`) must grant that rule to that container by name.
Each rule's config carries its own grants (`"exempt": {"<container>": "<reason>"}`), because a
CrossGuard policy sees only its own config; the `unauthorised-exemption` rule carries the whole
table, to find labels nobody granted.

A grant names a container as the program names it (`napdms-<stack>-<service>`, which covers
its replicas `...-1`, `...-2`; an init container by its full name). Some rules can never be
waived outside the dev stack, whatever a config file says: a container that is privileged, holds
a runtime's socket, shares a host namespace or mounts the host's root or a runtime's state owns
the host, and no reason makes that acceptable in production. The rule that finds self-granted
labels can itself be waived nowhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .facts import Labelled
from .names import object_prefix

GRANTS_SETTING = "exempt"
"""Every rule's setting: `{"<container>": "<reason>"}`."""
UNWAIVABLE = frozenset(
    {
        "privileged",
        "docker-socket",
        "host-network",
        "host-pid",
        "host-ipc",
        "host-userns",
        "runtime-state-mount",
        # A volume whose driver binds a sensitive host path: the same as mounting it, hidden.
        "bind-volume",
    }
)
"""Rules no stack but dev may waive: each finding of these hands the container the host."""
WAIVABLE_STACKS = ("dev",)
"""Stacks whose config may grant an `UNWAIVABLE` rule (a developer's own machine)."""
SELF_GRANT_RULE = "unauthorised-exemption"
TABLE_SETTING = "granted"
"""The `unauthorised-exemption` rule's setting: `{"<container>": {"<rule-id>": "<reason>"}}`."""

_REPLICA = re.compile(r"^(?P<base>.+)-\d+$")


def grant_key(name: str) -> str:
    """The name a grant uses for a container: its replicas (`<base>-<n>`) share the base's."""
    match = _REPLICA.match(name)
    return match.group("base") if match else name


def waivable(rule_id: str, key: str) -> bool:
    """Whether a grant of `rule_id` to the container `key` can take effect at all."""
    if rule_id == SELF_GRANT_RULE:
        return False
    return rule_id not in UNWAIVABLE or any(
        key.startswith(object_prefix(stack) + "-") for stack in WAIVABLE_STACKS
    )


def granted_reason(subject: Labelled, rule_id: str, grants: Mapping[str, Any] | None) -> str | None:
    """The reason `subject` is exempt from `rule_id`: the stack grants it (by name, for a rule
    that can be waived there) and the subject records it with its label. None otherwise."""
    key = grant_key(subject.name)
    reason = (grants or {}).get(key)
    if not isinstance(reason, str) or not reason.strip() or not waivable(rule_id, key):
        return None
    return subject.exemption(rule_id) and reason.strip()


def grants_schema() -> dict[str, Any]:
    """JSON Schema of the `exempt` setting every rule takes."""
    return {"type": "object", "additionalProperties": {"type": "string"}}


def granted_for(table: Mapping[str, Mapping[str, str]], rule_id: str) -> dict[str, str]:
    """The part of the whole table (container -> rule -> reason) that grants `rule_id`:
    container -> reason, what the rule's `exempt` setting holds."""
    return {key: rules[rule_id] for key, rules in sorted(table.items()) if rule_id in rules}


def rule_grants(table: Mapping[str, Mapping[str, str]], rule_id: str) -> dict[str, Any]:
    """A rule's settings holding only its grants, taken from the whole table."""
    return {GRANTS_SETTING: granted_for(table, rule_id)}
