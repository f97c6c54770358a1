"""The live view's comparison: one declared container against its `docker inspect`, and a host's
declared volumes and networks against the daemon's. Pure functions over documents, so each rule
is tested on hand-made inspect documents.

Classification (the issue's rule: major is anything security-relevant, a missing or unmanaged
resource, a different image):

- major: the image; the user, capabilities, privileged mode, read-only root, security options,
  PIDs limit, mounts, published ports, networks (and their aliases: an alias is a DNS name other
  containers send traffic to) and the isolation modes (pid/ipc/uts/userns, devices, groups);
  memory, swap or CPUs raised above the declared limit or removed (limits are hardening: CIS 5.11
  and 5.12, and they keep one service from starving the NAS); a `napdms.exempt.*` label (an
  exemption record the policy reads); a declared container missing, stopped, or an init
  container that failed.
- minor: a limit lowered (the service may run short, nothing is exposed); environment variable
  names, other labels, the health check, the restart policy, the log settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from napdms_ops.drift.expected import ExpectedContainer, ExpectedObject
from napdms_ops.drift.model import Finding, Severity
from napdms_ops.drift.observed import Observed
from policies.rules import from_docker
from policies.rules.facts import ContainerFacts, Mount, PublishedPort
from policies.rules.names import (
    EXEMPT_LABEL,
    JOB_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_OPS,
    STACK_LABEL,
    object_prefix,
)

_MB = 1024 * 1024
_NS = 1_000_000_000
_RUNNING = ("running", "restarting")
"""A restarting container is there and meant to run: whether it is healthy is for `status`."""
_DEFAULT_IPC = ("", "private", "shareable")
_DEFAULT_RUNTIME = ("", "runc")


def _finding(
    subject: str,
    field: str,
    declared: str | None,
    live: str | None,
    severity: Severity,
    why: str,
    kind: str = "container",
) -> Finding:
    return Finding(
        source="live",
        subject=subject,
        kind=kind,
        field=field,
        declared=declared,
        live=live,
        severity=severity,
        why=why,
    )


def _changed(field: str, stack: str) -> str:
    return f"{field} is not what the program declares: {_recreate(stack)}"


def _recreate(stack: str) -> str:
    return (
        f"run `pulumi up --refresh --stack {stack}` to recreate it as declared, or change the "
        "program if the change is wanted"
    )


def container_findings(
    stack: str,
    want: ExpectedContainer,
    doc: Mapping[str, Any] | None,
    observed: Observed,
    image_of: Callable[[str], str] = str,
) -> list[Finding]:
    """Every difference between one declared container and its inspect document (`None`: the
    daemon has no container of that name)."""
    name = want.name
    if doc is None:
        return [
            _finding(
                name,
                "missing",
                want.image_ref,
                None,
                "major",
                f"declared on host {want.host} but not there: run `pulumi up --refresh --stack "
                f"{stack}` to create it",
            )
        ]
    live = from_docker.container(doc, want.host)
    image = observed.images.get(doc.get("Image", "")) or {}
    found = _state(stack, want, doc)
    found += _image(stack, want, doc, observed, image_of)
    for field, declared, actual in _security_fields(want, live, doc, image):
        if declared != actual:
            found.append(_finding(name, field, declared, actual, "major", _changed(field, stack)))
    found += _pids_limit(stack, want, live)
    found += _limits(stack, want, live)
    for field, declared, actual in _other_fields(want, live, doc, image):
        if declared != actual:
            found.append(_finding(name, field, declared, actual, "minor", _changed(field, stack)))
    found += _labels(stack, want, live, image)
    return found


def _state(stack: str, want: ExpectedContainer, doc: Mapping[str, Any]) -> list[Finding]:
    state = doc.get("State") or {}
    status = state.get("Status") or ""
    name = want.name
    if want.init:
        # Created, then run once by the stack's command: exited 0 is done, running is doing it.
        code = int(state.get("ExitCode") or 0)
        if status == "exited" and code != 0:
            return [
                _finding(
                    name,
                    "stopped",
                    "exited 0",
                    f"exited {code}",
                    "major",
                    f"the init container failed, so its service's files may be missing: read "
                    f"`docker logs {name}`, then run `pulumi up --refresh --stack {stack}`",
                )
            ]
        if status in ("created", "dead"):
            return [
                _finding(
                    name,
                    "stopped",
                    "exited 0",
                    status,
                    "major",
                    f"the init container never completed: run `pulumi up --refresh --stack "
                    f"{stack}` to run it",
                )
            ]
        return []
    if status in _RUNNING and not state.get("Paused"):
        return []
    shown = "paused" if state.get("Paused") else status
    return [
        _finding(
            name,
            "stopped",
            "running",
            shown,
            "major",
            f"{shown} but declared to run: read `docker logs {name}`, then `docker "
            f"{'unpause' if shown == 'paused' else 'start'} {name}` or run `pulumi up --refresh "
            f"--stack {stack}`",
        )
    ]


def _image(
    stack: str,
    want: ExpectedContainer,
    doc: Mapping[str, Any],
    observed: Observed,
    image_of: Callable[[str], str],
) -> list[Finding]:
    ref = image_of(want.image_ref)
    wanted = observed.image_ids.get(ref)
    running = doc.get("Image") or ""
    shown = (doc.get("Config") or {}).get("Image") or running
    if wanted == running:
        return []
    why = (
        f"runs {shown} ({running[:19]}), not the declared image: run `pulumi up --refresh --stack "
        f"{stack}` to recreate it from {want.image_ref}, or deploy the new image with "
        "`napdms-ops deploy` so the program declares it"
    )
    if wanted is None:
        why = (
            f"the declared image {want.image_ref} is not on host {want.host}, so the container "
            f"runs another one: run `pulumi up --refresh --stack {stack}` to pull it and recreate "
            "the container"
        )
    return [_finding(want.name, "image", want.image_ref, shown, "major", why)]


def _security_fields(
    want: ExpectedContainer,
    live: ContainerFacts,
    doc: Mapping[str, Any],
    image: Mapping[str, Any],
) -> Iterable[tuple[str, str, str]]:
    """(field, declared, live) as short text, for each security-relevant setting."""
    declared = want.facts
    # An unset user runs the image's USER: compare what actually runs.
    yield "user", declared.user or image.get("User") or "", live.user or image.get("User") or ""
    yield "capabilities", _caps(declared), _caps(live)
    yield "privileged", str(declared.privileged), str(live.privileged)
    yield "read_only", str(declared.read_only_root), str(live.read_only_root)
    yield "security_opts", _items(declared.security_opts), _items(live.security_opts)
    anonymous = set((image.get("Volumes") or {}).keys())
    mounts = _mounts(m for m in live.mounts if not _anonymous(m, anonymous))
    yield "mounts", *_difference(_mounts(declared.mounts), mounts)
    yield "ports", *_difference(_ports(declared.ports), _ports(live.ports))
    yield "networks", *_difference(*_network_pair(want, doc))
    yield "isolation", _isolation(declared, declared), _isolation(live, declared)


def _other_fields(
    want: ExpectedContainer,
    live: ContainerFacts,
    doc: Mapping[str, Any],
    image: Mapping[str, Any],
) -> Iterable[tuple[str, str, str]]:
    """(field, declared, live) for the settings whose change exposes nothing."""
    declared_env = {key for key, _value in want.facts.env}
    # The daemon merges the image's ENV into the container's: those are not a change.
    from_image = {entry.partition("=")[0] for entry in image.get("Env") or ()}
    live_env = {key for key, _value in live.env} - (from_image - declared_env)
    yield "env", *_difference(sorted(declared_env), sorted(live_env))
    yield "healthcheck", _health(want), _live_health(doc, image, declared=want.health is not None)
    yield "restart", _restart(want.facts), _restart(live)
    yield "logging", _logging(want.facts), _logging(live)


def _pids_limit(stack: str, want: ExpectedContainer, live: ContainerFacts) -> list[Finding]:
    """Any change of the PIDs limit is major (CIS 5.29: it stops a fork bomb). The stack's
    command sets it once, after the container is created, so `pulumi up` does not restore it."""
    if want.pids_limit == live.pids_limit:
        return []
    restore = (
        f"`docker update --pids-limit {want.pids_limit} {want.name}` restores it"
        if want.pids_limit > 0
        else f"run `pulumi up --refresh --stack {stack}` to recreate it without one"
    )
    return [
        _finding(
            want.name,
            "pids_limit",
            _pids(want.pids_limit),
            _pids(live.pids_limit),
            "major",
            f"the PIDs limit differs: {restore}",
        )
    ]


def _limits(stack: str, want: ExpectedContainer, live: ContainerFacts) -> list[Finding]:
    """Memory, swap and CPUs: raised or removed is major, lowered is minor."""
    name = want.name
    found = []
    rows = (
        ("memory", want.facts.memory_bytes, live.memory_bytes, _bytes, "--memory"),
        ("memory_swap", want.facts.memory_swap_bytes or 0, live.memory_swap_bytes, _bytes, None),
        ("cpus", round(want.facts.cpus, 3), round(live.cpus, 3), str, "--cpus"),
    )
    for field, declared, actual, show, flag in rows:
        # Without a declared swap limit the daemon picks one (twice the memory): nothing to hold.
        if declared == actual or (field == "memory_swap" and not declared):
            continue
        weaker = declared > 0 and (actual <= 0 or actual > declared)
        restore = (
            f"`docker update {flag} {show(declared)} {name}` restores it"
            if flag and declared > 0
            else f"`pulumi up --refresh --stack {stack}` restores it"
        )
        why = (
            f"{field} is {show(actual)}, declared {show(declared)}: "
            + ("a weaker limit; " if weaker else "lower than declared; ")
            + restore
            + (" (with --memory-swap to match)" if field == "memory" else "")
        )
        severity: Severity = "major" if weaker else "minor"
        found.append(_finding(name, field, show(declared), show(actual), severity, why))
    return found


def _labels(
    stack: str, want: ExpectedContainer, live: ContainerFacts, image: Mapping[str, Any]
) -> list[Finding]:
    """One finding per label that differs: major for an exemption record, minor otherwise. A
    computed label (see `ExpectedContainer.computed_labels`) counts only by its presence."""
    declared = dict(want.facts.labels)
    inherited = dict(image.get("Labels") or {})
    actual = {
        key: value
        for key, value in live.labels.items()
        if key in declared or inherited.get(key) != value
    }
    found = []
    for key in sorted(set(declared) | set(actual)):
        was, now = declared.get(key), actual.get(key)
        if key in want.computed_labels and was is not None and now is not None:
            continue
        if was == now:
            continue
        exempt = key.startswith(EXEMPT_LABEL)
        why = (
            f"label {key} differs: an exemption record the audit and the pack read; "
            if exempt
            else f"label {key} differs; "
        ) + _recreate(stack)
        found.append(
            _finding(
                want.name,
                "labels",
                None if was is None else f"{key}={was}",
                None if now is None else f"{key}={now}",
                "major" if exempt else "minor",
                why,
            )
        )
    return found


def unmanaged_findings(
    stack: str,
    host: str,
    observed: Observed,
    declared: Iterable[str],
    networks: Iterable[str],
    volumes: Iterable[str],
) -> list[Finding]:
    """The containers on a host of the stack that the stack does not declare but that claim it
    or reach into it: its `napdms.stack` label, its name prefix (`napdms-<stack>-`), one of its
    networks, or one of its volumes. Containers of other stacks and tools are not this stack's
    drift (`napdms-ops audit` reports every unmanaged container of a daemon). A restore or drill
    job of `napdms-ops` (managed-by napdms-ops, a `napdms.job` label) is minor: expected while it
    runs, clutter after."""
    known, ours, theirs = set(declared), set(networks), set(volumes)
    prefix = object_prefix(stack) + "-"
    found = []
    for name, doc in sorted(observed.containers.items()):
        if name in known:
            continue
        labels = (doc.get("Config") or {}).get("Labels") or {}
        joined = set(((doc.get("NetworkSettings") or {}).get("Networks") or {}).keys())
        mounted = {m.get("Name") for m in doc.get("Mounts") or () if m.get("Type") == "volume"}
        claims = [
            f"label {STACK_LABEL}={stack}" if labels.get(STACK_LABEL) == stack else "",
            f"name prefix {prefix}" if name.startswith(prefix) else "",
            f"joins {', '.join(sorted(joined & ours))}" if joined & ours else "",
            f"mounts {', '.join(sorted(mounted & theirs))}" if mounted & theirs else "",
        ]
        claims = [claim for claim in claims if claim]
        if not claims:
            continue
        job = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_OPS and labels.get(JOB_LABEL)
        why = (
            f"a napdms-ops {labels.get(JOB_LABEL)} job ({'; '.join(claims)}): remove it once it "
            f"has finished (`docker rm {name}`)"
            if job
            else f"on host {host} with {'; '.join(claims)}, but the program does not declare "
            f"it: remove it (`docker rm -f {name}`), or declare it in the catalog and run "
            f"`pulumi up --stack {stack}`"
        )
        image = (doc.get("Config") or {}).get("Image")
        found.append(_finding(name, "unmanaged", None, image, "minor" if job else "major", why))
    return found


def object_findings(
    stack: str,
    kind: str,
    want: ExpectedObject,
    doc: Mapping[str, Any] | None,
) -> list[Finding]:
    """A declared volume or network against the daemon's: missing (major), a network's
    `internal` flag (major: it is the data segments' isolation), labels (minor)."""
    if doc is None:
        restore = (
            "; a data volume that was removed took its data with it: restore it with "
            "`napdms-ops restore`"
            if kind == "volume"
            else ""
        )
        return [
            _finding(
                want.name,
                "missing",
                want.name,
                None,
                "major",
                f"declared on host {want.host} but not there: run `pulumi up --refresh --stack "
                f"{stack}` to create it{restore}",
                kind,
            )
        ]
    found = []
    if kind == "network" and bool(doc.get("Internal")) != want.internal:
        found.append(
            _finding(
                want.name,
                "internal",
                str(want.internal),
                str(bool(doc.get("Internal"))),
                "major",
                f"the network's isolation differs: {_recreate(stack)}",
                kind,
            )
        )
    labels = dict(doc.get("Labels") or {})
    if labels != dict(want.labels):
        declared, actual = _difference(_pairs(want.labels), _pairs(labels))
        found.append(
            _finding(want.name, "labels", declared, actual, "minor", _recreate(stack), kind)
        )
    return found


# ------------------------------------------------------------------------- normalised text


def _items(values: Iterable[str]) -> str:
    return ", ".join(sorted(set(values)))


def _difference(declared: Iterable[str], live: Iterable[str]) -> tuple[str, str]:
    """Only what differs: the declared items missing live, and the live items not declared."""
    want, have = set(declared), set(live)
    return ", ".join(sorted(want - have)), ", ".join(sorted(have - want))


def _pairs(labels: Mapping[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in labels.items()]


def _caps(facts: ContainerFacts) -> str:
    return f"add [{_items(facts.cap_add)}] drop [{_items(facts.cap_drop)}]"


def _pids(limit: int) -> str:
    return str(limit) if limit > 0 else "unlimited"


def _bytes(value: int | None) -> str:
    if not value:
        return "unlimited"
    if value < 0:
        return "unlimited swap"
    return f"{value // _MB}m" if value % _MB == 0 else str(value)


def _anonymous(mount: Mount, image_volumes: set[str]) -> bool:
    """An anonymous volume the daemon made for an image's VOLUME that the declaration left
    unmounted: the image's doing, not a change."""
    return mount.kind == "volume" and mount.target in image_volumes and len(mount.source) == 64


def _mounts(mounts: Iterable[Mount]) -> list[str]:
    return [
        f"{m.kind}:{m.source or '-'}:{m.target}{':ro' if m.read_only else ''}"
        + (f" ({m.options})" if m.options else "")
        for m in mounts
    ]


def _ports(ports: Iterable[PublishedPort]) -> list[str]:
    return [
        f"{'0.0.0.0' if p.all_interfaces else p.host_ip}:{p.host_port}->"
        f"{p.container_port}/{p.protocol}"
        for p in ports
    ]


def _network_pair(want: ExpectedContainer, doc: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Declared and live networks with their aliases. The daemon gives a container its short id
    and its hostname as aliases on its own, so neither counts on either side."""
    own = {str(doc.get("Id", ""))[:12], (doc.get("Config") or {}).get("Hostname") or ""}
    joined = (doc.get("NetworkSettings") or {}).get("Networks") or {}
    live = {name: (endpoint or {}).get("Aliases") or () for name, endpoint in joined.items()}
    return _networks(want.networks, own), _networks(live, own)


def _networks(networks: Mapping[str, Iterable[str]], own: set[str]) -> list[str]:
    return [
        f"{name} [{' '.join(sorted(set(aliases) - own))}]" for name, aliases in networks.items()
    ]


def _isolation(facts: ContainerFacts, declared: ContainerFacts) -> str:
    """The namespace modes and device access as one line; daemon defaults read as unset."""
    ipc = "" if facts.ipc_mode in _DEFAULT_IPC else facts.ipc_mode
    runtime = "" if facts.runtime in _DEFAULT_RUNTIME else facts.runtime
    # The daemon's cgroupns default depends on its cgroup version: compare only a declared one.
    cgroupns = facts.cgroupns_mode if declared.cgroupns_mode else ""
    parts = {
        "pid": facts.pid_mode,
        "ipc": ipc,
        "uts": facts.uts_mode,
        "userns": facts.userns_mode,
        "cgroupns": cgroupns,
        "runtime": runtime,
        "devices": _items(facts.devices),
        "device_requests": _items(facts.device_requests),
        "device_cgroup_rules": _items(facts.device_cgroup_rules),
        "group_add": _items(facts.group_add),
        "volumes_from": _items(facts.volumes_from),
        "publish_all": "yes" if facts.publish_all else "",
    }
    return " ".join(f"{key}={value}" for key, value in parts.items() if value) or "default"


def _health(want: ExpectedContainer) -> str:
    health = want.health
    if health is None:
        return "image default"
    return _health_text(
        health.test, health.interval_ns, health.timeout_ns, health.retries, health.start_period_ns
    )


def _live_health(doc: Mapping[str, Any], image: Mapping[str, Any], declared: bool) -> str:
    """The container's health check; without a declared one, the image's counts as expected."""
    check = (doc.get("Config") or {}).get("Healthcheck")
    if not declared and (not check or check == image.get("Healthcheck")):
        return "image default"
    if not check:
        return "none"
    return _health_text(
        tuple(check.get("Test") or ()),
        int(check.get("Interval") or 0),
        int(check.get("Timeout") or 0),
        int(check.get("Retries") or 0),
        int(check.get("StartPeriod") or 0),
    )


def _health_text(
    test: tuple[str, ...], interval: int, timeout: int, retries: int, start: int
) -> str:
    return (
        f"{' '.join(test)} every {interval / _NS:g}s, timeout {timeout / _NS:g}s, "
        f"{retries} retries, start period {start / _NS:g}s"
    )


def _restart(facts: ContainerFacts) -> str:
    policy = facts.restart or "no"
    return f"{policy}:{facts.max_retries}" if policy == "on-failure" else policy


def _logging(facts: ContainerFacts) -> str:
    options = ", ".join(f"{key}={value}" for key, value in sorted(facts.log_opts.items()))
    return f"{facts.log_driver or 'json-file'} ({options})"
