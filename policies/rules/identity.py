"""Who the process is and what it may do: user, privileges, capabilities, security options."""

from __future__ import annotations

import hashlib
import json
import re
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
        "SYS_RESOURCE",
        "SYS_BOOT",
        "SYS_TIME",
        "SYS_CHROOT",
        "SYS_PACCT",
        "SYSLOG",
        "AUDIT_CONTROL",
        "AUDIT_READ",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "BPF",
        "PERFMON",
        "CHECKPOINT_RESTORE",
        "LINUX_IMMUTABLE",
        "DAC_OVERRIDE",
        # open_by_handle_at(2) reads any file of the host filesystem: the "shocker" escape.
        "DAC_READ_SEARCH",
        "SETFCAP",
    }
)
"""Capabilities that let a process escape the container or control the host: kernel modules,
raw I/O, tracing, eBPF, the clock, the kernel log, audit and LSM policy, immutable files,
file capabilities, and reading or writing past file permissions."""
DOCKER_GROUPS_SETTING = "dockerGroups"


def _is_root_id(part: str) -> bool:
    """`root`, `0`, `00`, `+0`: what the runtime resolves to uid or gid 0."""
    part = part.strip()
    return part == "root" or (re.fullmatch(r"\+?\d+", part) is not None and int(part) == 0)


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
    user = c.user.strip().split(":", 1)[0].strip()
    if not user:
        yield "no user is set, so the image's default (root for most images) runs the process"
    elif _is_root_id(user):
        yield f'runs as root (user "{c.user}")'


@container_rule(
    id="privileged-group",
    title="No container process belongs to the root group or the host's docker group",
    severity="high",
    fix=(
        'give user a non-root group ("1000:1000") and remove group_adds of 0, root and the '
        "docker group: the root group owns many host files a mount exposes, the docker group "
        "owns the Docker socket"
    ),
    config_schema={
        DOCKER_GROUPS_SETTING: {
            "type": "array",
            "items": {"type": "string"},
            "description": (
                "names and gids of the hosts' docker group (`getent group docker`), e.g. "
                '["docker", "998"]'
            ),
        }
    },
    defaults={DOCKER_GROUPS_SETTING: ["docker"]},
)
def privileged_group(c: ContainerFacts, settings: Mapping[str, Any]) -> Iterable[str]:
    docker_groups = {str(g).strip() for g in settings[DOCKER_GROUPS_SETTING]}
    uid, sep, group = c.user.strip().partition(":")
    if _is_root_id(uid):
        return  # root has the root group's access and more: run-as-root reports it
    if sep and _is_root_id(group):
        yield f'runs with the root group (user "{c.user}")'
    for added in c.group_add:
        if _is_root_id(added):
            yield f"adds the root group ({added.strip()}) to the process"
        elif added.strip() in docker_groups:
            yield f"adds the docker group ({added.strip()}): it can use a Docker socket it sees"


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


_UNCONFINED = {
    ("seccomp", "unconfined"): "turns the system-call filter off",
    ("apparmor", "unconfined"): "turns AppArmor off",
    ("systempaths", "unconfined"): "unmasks /proc and /sys paths Docker hides or makes read-only",
    ("label", "disable"): "turns SELinux labelling off",
    ("label", "type:spc_t"): "runs as SELinux's unconfined super-privileged container type",
    ("label", "type:unconfined_t"): "runs unconfined by SELinux",
}
_DEFAULT_SECCOMP = ("", "builtin", "default", "docker-default", "runtime/default")
_ALLOW_ACTIONS = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")


@container_rule(
    id="unconfined-profile",
    title="seccomp, AppArmor, SELinux and Docker's masked system paths stay on",
    severity="high",
    cis="5.22",
    fix=(
        "remove seccomp=unconfined, apparmor=unconfined, systempaths=unconfined and "
        "label=disable (in any spelling) from security_opts"
    ),
)
def unconfined_profile(c: ContainerFacts, _: Mapping[str, Any]) -> Iterable[str]:
    for opt in c.security_opts:
        key, value = split_security_opt(opt)
        what = _UNCONFINED.get((key, value.lower().replace(" ", "")))
        if what and c.privileged and key == "label":
            # The daemon adds label=disable to every privileged container: `privileged` says it.
            continue
        if what:
            yield f"security option {opt.strip()!r} {what}"
        elif key == "seccomp" and _allows_everything(value):
            yield (
                f"the seccomp profile {seccomp_profile_name(value)} allows every system call "
                "it does not list: as good as unconfined"
            )


@container_rule(
    id="custom-seccomp-profile",
    title="Containers use Docker's default seccomp profile, or one the stack has reviewed",
    severity="low",
    fix=(
        "remove the seccomp=<profile> option to get Docker's default profile, or review the "
        "profile and list its name (the file, or sha256:<hash> as the finding shows it) in the "
        "rule's reviewedProfiles"
    ),
    config_schema={"reviewedProfiles": {"type": "array", "items": {"type": "string"}}},
    defaults={"reviewedProfiles": []},
)
def custom_seccomp_profile(c: ContainerFacts, settings: Mapping[str, Any]) -> Iterable[str]:
    reviewed = {str(p).strip() for p in settings["reviewedProfiles"]}
    for opt in c.security_opts:
        key, value = split_security_opt(opt)
        if key != "seccomp" or value.lower() in (*_DEFAULT_SECCOMP, "unconfined"):
            continue
        name = seccomp_profile_name(value)
        if name not in reviewed and value.strip() not in reviewed:
            yield (
                f"runs under the custom seccomp profile {name}, which may allow what Docker's "
                "default blocks"
            )


def split_security_opt(opt: str) -> tuple[str, str]:
    """`seccomp=unconfined`, `seccomp:unconfined` and ` SECCOMP = unconfined ` are all
    (`seccomp`, `unconfined`); the value keeps its case (a profile's path or JSON). As Docker
    splits: at the first `=`, or at the first `:` when there is no `=` (`label:type:spc_t`)."""
    key, _sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
    return key.strip().lower(), value.strip()


def seccomp_profile_name(value: str) -> str:
    """A profile as a reviewer names it: its file, or `sha256:<16 hex>` of an inline profile
    (the Docker CLI sends the file's JSON, which is all a live daemon reports)."""
    value = value.strip()
    if value.startswith("{"):
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return value


def _allows_everything(value: str) -> bool:
    """An inline profile whose default action allows, and that blocks nothing it lists."""
    if not value.strip().startswith("{"):
        return False
    try:
        profile = json.loads(value)
    except ValueError:
        return False
    if not isinstance(profile, dict):
        return False
    if str(profile.get("defaultAction", "")).upper() not in _ALLOW_ACTIONS:
        return False
    return all(
        isinstance(rule, dict) and str(rule.get("action", "")).upper() in _ALLOW_ACTIONS
        for rule in profile.get("syscalls") or ()
    )


def _is_no_new_privileges(opt: str) -> bool:
    key, value = split_security_opt(opt)
    return key == "no-new-privileges" and value.lower() in ("", "true", "1")
