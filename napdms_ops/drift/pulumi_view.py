"""Pulumi's view of drift: a read-only refresh-and-preview through the Automation API.

`preview(refresh=True, expect_no_changes=True)` refreshes the state in memory only and lists what
`up` would change to bring the stack back to the program; `Stack.refresh()` would write the
refreshed state and hide the drift from the next check. The findings come from the engine's
events (`on_event`), never from its text output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from napdms_ops.drift.model import Finding, Severity
from policies.rules.names import EXEMPT_LABEL

CHANGING_OPS = {
    "create": "create",
    "delete": "delete",
    "update": "update",
    "replace": "replace",
    # A replacement shows as up to three steps of one resource: reported once, as `replace`.
    "create-replacement": "replace",
    "delete-replaced": "replace",
}
"""Engine step operations that are drift, by the operation reported. `same`, `read` and the
refresh steps themselves (`refresh`: what the refresh found, which the step after it turns into
what `up` would change) are not."""

SECURITY_PROPERTIES = frozenset(
    {
        # The list: the image, the user, privileges, filesystem, reachability, limits.
        "image",
        "user",
        "capabilities",
        "privileged",
        "readOnly",
        "securityOpts",
        "mounts",
        "volumes",
        "ports",
        "networksAdvanced",
        "memory",
        "cpus",
        "pids",
        # Other spellings of the same effects: more memory or CPU, host namespaces and devices,
        # extra groups, kernel parameters.
        "memorySwap",
        "cpuShares",
        "cpuSet",
        "cpuQuota",
        "cpuPeriod",
        "devices",
        "networkMode",
        "pidMode",
        "ipcMode",
        "usernsMode",
        "groupAdds",
        "sysctls",
        "publishAllPorts",
        "runtime",
        "cgroupParent",
    }
)
"""Top-level properties (the engine's camelCase names) whose change is a security matter."""

LIMITS = frozenset({"memory", "memorySwap", "cpus"})
"""Limits judged as the live view judges them: raised or removed is major, lowered is minor (the
service may run short, nothing is exposed)."""

PIDS_COMMAND_SUFFIX = "-pids"
"""The pulumi-command resource that sets a container's PIDs limit (`HardenedService`)."""

SHORT = 80
"""Characters of a declared or live value kept in a finding."""


class PulumiUnavailable(Exception):
    """Pulumi's view cannot run on this machine (no CLI); `reason` says why and how to get it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PulumiViewError(Exception):
    """The refresh-and-preview failed for another reason than drift; the message names the stack
    and the fix."""


class PreviewStack(Protocol):
    """The part of `pulumi.automation.Stack` the view uses."""

    def preview(self, **kwargs: Any) -> Any: ...


Selector = Callable[[str, dict[str, str], Path | None], PreviewStack]
"""Selects `stack` with the CLI's environment and the pinned CLI's root (None: `pulumi` on
PATH)."""


def cli_root(stack: str, environ: Mapping[str, str] = os.environ) -> Path | None:
    """None when `pulumi` is on PATH; else the pinned CLI's root if `napdms-ops up` installed
    it; raises `PulumiUnavailable` when there is neither."""
    from napdms_ops.workstation.pulumi_cli import NoPulumiCli
    from napdms_ops.workstation.pulumi_cli import cli_root as installed_root

    try:
        return installed_root(stack, environ)
    except NoPulumiCli as missing:
        raise PulumiUnavailable(str(missing)) from None


def _select(stack: str, env: dict[str, str], root: Path | None) -> PreviewStack:
    from components.settings.loader import PROJECT_DIR
    from napdms_ops.workstation.pulumi_cli import select_stack

    return select_stack(stack, env, root, PROJECT_DIR)


def pulumi_findings(
    stack: str,
    environ: Mapping[str, str] = os.environ,
    select: Selector = _select,
    root: Callable[[str, Mapping[str, str]], Path | None] = cli_root,
) -> list[Finding]:
    """What a read-only refresh-and-preview of `stack` would change, as findings.

    Raises `PulumiUnavailable` when no Pulumi CLI is installed, `PulumiViewError` when the
    stack cannot be selected or the preview fails for another reason than drift."""
    from napdms_ops.workstation.pulumi_cli import DeployError, deploy_environment

    cli = root(stack, environ)
    try:
        env = deploy_environment(stack, environ)
    except DeployError as error:
        raise PulumiViewError(str(error)) from None
    try:
        handle = select(stack, env, cli)
    except Exception as error:  # the CLI failing, no such stack, a backend error
        raise PulumiViewError(
            f"{stack}: cannot select the stack with the Automation API ({_last_line(error)}); "
            f"run `napdms-ops up --stack {stack}` once (it creates the stack)"
        ) from None
    return preview_findings(stack, handle)


def preview_findings(stack: str, handle: PreviewStack) -> list[Finding]:
    """Run the refresh-and-preview on `handle` and turn its engine events into findings.

    With `expect_no_changes` the engine fails the preview when it would change anything: that
    failure is the drift the findings carry, not an error. A failure before the engine summed
    up the preview, or one without a change, is an error."""
    from pulumi.automation import CommandError

    events: list[Any] = []
    try:
        handle.preview(refresh=True, expect_no_changes=True, on_event=events.append, color="never")
    except CommandError as error:
        findings = findings_from_events(events)
        if not findings or not any(e.summary_event for e in events):
            raise PulumiViewError(
                f"{stack}: the refresh-and-preview failed ({_last_line(error)}); run "
                f"`pulumi preview --refresh --stack {stack}` to see the engine's full output"
            ) from None
        return findings
    return findings_from_events(events)


def findings_from_events(events: Iterable[Any]) -> list[Finding]:
    """One finding per resource replaced, created or deleted, and per property an update
    changes, from the engine's step events (`resource_pre_event`, `res_outputs_event`)."""
    findings: dict[tuple[str, str], Finding] = {}
    for event in events:
        step = event.resource_pre_event or event.res_outputs_event
        if step is None:
            continue
        metadata = step.metadata
        op = CHANGING_OPS.get(_op(metadata.op))
        if op is None:
            continue
        for finding in _step_findings(op, metadata):
            findings.setdefault((finding.subject, finding.field), finding)
    return list(findings.values())


def _op(op: Any) -> str:
    return getattr(op, "value", op)


def _step_findings(op: str, metadata: Any) -> list[Finding]:
    urn, kind = metadata.urn, metadata.type
    if op == "create":
        return [
            _finding(
                urn,
                "create",
                "major",
                f"{kind} is declared but gone (removed outside Pulumi); `pulumi up` creates it "
                "again: find out who removed it first",
            )
        ]
    if op == "delete":
        return [
            _finding(
                urn,
                "delete",
                "major",
                f"{kind} is in the stack's state but no longer declared; `pulumi up` deletes "
                "it: declare it again if it must stay",
            )
        ]
    if op == "replace":
        keys = ", ".join(metadata.keys or metadata.diffs or []) or "unknown properties"
        return [
            _finding(
                urn,
                "replace",
                "major",
                f"{kind} differs in {keys}, which `pulumi up` can only change by replacing it",
            )
        ]
    paths = list(metadata.detailed_diff or {}) or list(metadata.diffs or []) or ["update"]
    old = (metadata.old.outputs or metadata.old.inputs) if metadata.old else None
    new = metadata.new.inputs if metadata.new else None
    return [_update_finding(urn, kind, path, old, new) for path in paths]


def _update_finding(urn: str, kind: str, path: str, old: Any, new: Any) -> Finding:
    top = _top(path)
    declared, live = _at(new, path), _at(old, path)
    if top in LIMITS and path == top and (weaker := _weaker(declared, live)) is not None:
        severity: Severity = "major" if weaker else "minor"
        what = "a weaker limit than declared" if weaker else "a lower limit than declared"
    elif top == "labels" and _exemption(path, old, new):
        severity, what = "major", "an exemption record (napdms.exempt.*) the pack and audit read"
    elif top in SECURITY_PROPERTIES or (
        urn.endswith(PIDS_COMMAND_SUFFIX) and kind.startswith("command:")
    ):
        severity, what = "major", "a security-relevant setting changed outside Pulumi"
    else:
        severity, what = "minor", "a setting changed outside Pulumi"
    return _finding(
        urn,
        path,
        severity,
        f"{path} of {kind} is {what}; `pulumi up` sets it back, or change the program to match",
        declared=_shown(top, declared),
        live=_shown(top, live),
    )


def _weaker(declared: Any, live: Any) -> bool | None:
    """Whether a live limit is weaker than the declared one (raised, or removed: 0 or absent),
    as the live view judges it; None when either is not a number."""
    try:
        want, have = float(declared), float(live if live is not None else 0)
    except (TypeError, ValueError):
        return None
    return want > 0 and (have <= 0 or have > want)


def _exemption(path: str, old: Any, new: Any) -> bool:
    """Whether the label at `path` (`labels[i]` or `labels[i].value`), before or after, is an
    exemption record."""
    entry = "".join(f"[{s}]" if isinstance(s, int) else s for s in _steps(path)[:2])
    for side in (old, new):
        label = _at(side, entry)
        if isinstance(label, Mapping) and str(label.get("label", "")).startswith(EXEMPT_LABEL):
            return True
    return False


def _finding(
    urn: str,
    field: str,
    severity: Severity,
    why: str,
    declared: str | None = None,
    live: str | None = None,
) -> Finding:
    return Finding(
        source="pulumi",
        subject=urn,
        kind="resource",
        field=field,
        declared=declared,
        live=live,
        severity=severity,
        why=why,
    )


_STEP = re.compile(r'\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|\.?([^.\[]+)')


def _steps(path: str) -> list[str | int]:
    """A property path (`a.b[0]`, `labels["x.y"]`) as keys and indices."""
    steps: list[str | int] = []
    for quoted, index, name in _STEP.findall(path):
        steps.append(int(index) if index else quoted or name)
    return steps


def _top(path: str) -> str:
    steps = _steps(path)
    return str(steps[0]) if steps else path


def _at(value: Any, path: str) -> Any:
    for step in _steps(path):
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, Mapping) and step in value:
            value = value[step]
        else:
            return None
    return value


def _shown(top: str, value: Any) -> str | None:
    """A value as short text; for the environment the variable names only, for uploads
    nothing."""
    if value is None or top == "uploads":
        return None
    if top == "envs":
        names = [str(v).split("=", 1)[0] for v in (value if isinstance(value, list) else [value])]
        return ", ".join(names)
    if top == "labels" and isinstance(value, Mapping) and "label" in value:
        value = f"{value['label']}={value.get('value', '')}"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= SHORT else text[: SHORT - 1] + "…"


def _last_line(error: BaseException) -> str:
    """The engine's last words: the last line of its stderr when the error carries one."""
    text = str(error)
    text = text.rsplit(" stderr:", 1)[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
