"""Who the process is and what it may do: user, privileges, capabilities, security options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .facts import ContainerFacts
from .names import CAP_ADD_LABEL
from .rule import container_rule

DANGEROUS_CAPABILITIES = frozenset(
    {
        "ALL",
        "SYS_ADMIN",
        "NET_ADMIN",
        "SYS_PTRACE",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_BOOT",
        "SYS_TIME",
        "SYS_CHROOT",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "BPF",
        "PERFMON",
        "DAC_OVERRIDE",
        # open_by_handle_at(2) reads any file of the host filesystem: the "shocker" escape.
        "DAC_READ_SEARCH",
        "SETFCAP",
    }
)
"""Capabilities that let a process escape the container or control the host."""


@container_rule(
    id="run-as-root",
    title="Containers run as a non-root user",
    severity="high",
    cis="4.1",
    fix=(
        'set user to a numeric uid:gid such as "1000:1000" '
        "(HardenedService takes it from the catalog)"
    ),
)
def run_as_root(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    user = c.user.strip().split(":", 1)[0]
    if not user:
        yield "no user is set, so the image's default (root for most images) runs the process"
    elif user == "root" or (user.isdigit() and int(user) == 0):
        yield f'runs as root (user "{c.user}")'


@container_rule(
    id="privileged",
    title="Containers are never privileged",
    severity="critical",
    cis="5.5",
    fix="remove privileged; add the one capability the service needs instead",
)
def privileged(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if c.privileged:
        yield "runs privileged: every capability, every device, no seccomp or AppArmor"


@container_rule(
    id="capabilities",
    title="Containers drop ALL capabilities and add back only documented ones",
    severity="high",
    cis="5.4",
    fix=(
        'set capabilities drops ["ALL"]; add back only what the service needs and document each '
        "with a napdms.cap-add.<CAP> label (the catalog's cap_add)"
    ),
)
def capabilities(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if "ALL" not in c.cap_drop:
        yield (
            "capabilities are not dropped to ALL, so Docker's default set stays "
            "(CHOWN, SETUID, NET_RAW, ...)"
        )
    for cap in c.cap_add:
        if cap != "ALL" and not (c.labels.get(CAP_ADD_LABEL + cap) or "").strip():
            yield f"adds {cap} without a napdms.cap-add.{cap} label saying why"


@container_rule(
    id="dangerous-capability",
    title="No container holds a capability that controls the host",
    severity="critical",
    cis="5.4",
    fix="remove the capability; if there is truly no other way, exempt the container with a reason",
)
def dangerous_capability(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for cap in c.cap_add:
        if cap in DANGEROUS_CAPABILITIES:
            yield f"adds {cap}, which can be used to take over the host"


@container_rule(
    id="no-new-privileges",
    title="Containers set no-new-privileges",
    severity="high",
    cis="5.26",
    fix='add security_opts ["no-new-privileges:true"]',
)
def no_new_privileges(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    if not any(_is_no_new_privileges(opt) for opt in c.security_opts):
        yield "setuid binaries and file capabilities can still raise the process's privileges"


@container_rule(
    id="unconfined-profile",
    title="seccomp and AppArmor stay on",
    severity="high",
    cis="5.22",
    fix="remove seccomp=unconfined / apparmor=unconfined from security_opts",
)
def unconfined_profile(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for opt in c.security_opts:
        key, _sep, value = opt.replace("=", ":", 1).partition(":")
        if key.strip().lower() in ("seccomp", "apparmor") and value.strip().lower() == "unconfined":
            yield f"security option {opt!r} turns the kernel's filter off"


def _is_no_new_privileges(opt: str) -> bool:
    key, _sep, value = opt.replace("=", ":", 1).partition(":")
    return key.strip().lower() == "no-new-privileges" and value.strip().lower() in ("", "true", "1")
