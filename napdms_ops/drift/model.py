"""What a drift check reports: findings from two views, one classification, one exit code."""

from __future__ import annotations

from typing import Literal

from components.model.strict import StrictModel

Severity = Literal["minor", "major"]
"""major: anything security-relevant, a missing or unmanaged resource, a different image."""
Source = Literal["live", "pulumi"]
"""live: `docker inspect` against the declared graph; pulumi: a read-only refresh-and-preview."""
Classification = Literal["none", "minor", "major"]

EXIT_CODES: dict[Classification, int] = {"none": 0, "minor": 1, "major": 2}


class Finding(StrictModel):
    """One difference between what is declared and what is there."""

    source: Source
    subject: str
    """A container, volume or network name (live), or a Pulumi URN (pulumi)."""
    kind: Literal["container", "volume", "network", "resource"]
    field: str
    """What differs: image, user, capabilities, memory, pids_limit, mounts, networks, ports, env,
    labels, ...; `missing`, `stopped`, `unmanaged` for a whole resource; for Pulumi's view the
    operation (update, replace, create, delete) or the property path."""
    declared: str | None = None
    live: str | None = None
    """Both as short text; environment values never appear, only variable names."""
    severity: Severity
    why: str
    """One line: what differs and what to do about it."""


class DriftReport(StrictModel):
    """One drift check of one stack."""

    stack: str
    time: str
    """UTC, ISO 8601."""
    sources: list[Source]
    """The views that ran."""
    skipped: dict[str, str] = {}
    """A view that could not run -> why (e.g. no Pulumi CLI on this machine)."""
    findings: list[Finding]
    containers: int
    volumes: int
    networks: int
    duration_s: float

    @property
    def classification(self) -> Classification:
        severities = {f.severity for f in self.findings}
        return "major" if "major" in severities else "minor" if severities else "none"

    @property
    def exit_code(self) -> int:
        """0 none, 1 minor, 2 major: what cron and CI act on."""
        return EXIT_CODES[self.classification]
