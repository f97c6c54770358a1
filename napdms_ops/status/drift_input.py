"""The stack's latest drift report, as `status` weighs it.

`napdms-ops drift` keeps each report as `<state dir>/drift/<stack>/<time>.json`, beside the
findings an operator accepted (`napdms_ops.drift.report`). What counts is the newest report
without its accepted findings, as for the drift command's own exit code and metric. No report
means the drift is unknown, which is not the same as no drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Drift:
    """What the latest report says: its classification (`unknown` without one) and when."""

    classification: Literal["none", "minor", "major", "unknown"]
    time: str | None = None
    findings: int = 0
    """Findings that count (accepted ones left out)."""
    major: int = 0
    error: str | None = None
    """Why the newest report could not be read (then the drift is unknown)."""


def latest_drift(state: Path, stack: str) -> Drift:
    """The newest report of `stack` under the state dir `state`, accepted findings left out."""
    from napdms_ops.drift.report import counted, latest, load_accepted

    directory = state / "drift" / stack
    try:
        found = latest(directory)
        if found is None:
            return Drift("unknown")
        _, report = found
        accepted = {a.fingerprint for a in load_accepted(directory)}
    except (OSError, ValueError, KeyError, TypeError) as error:
        return Drift("unknown", error=f"{directory}: unreadable drift report ({error})")
    counting = counted(report, accepted)
    return Drift(
        counting.classification,
        report.time,
        len(counting.findings),
        sum(f.severity == "major" for f in counting.findings),
    )
