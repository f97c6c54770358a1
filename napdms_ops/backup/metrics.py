"""The agent's state after each run, as a JSON record and as Prometheus metrics.

Alerts read these: no success for more than a day, a failed run (with its reason: network,
disk-full, wrong-password, ..., internal for an error the agent did not expect), a failed
service, a failed integrity check or offsite copy, manifests the agent could not read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

STATE_FILE = "last-run.json"
METRICS_FILE = "metrics.prom"


class RunState(BaseModel):
    """What the last run did, plus the last success carried over from earlier runs."""

    model_config = ConfigDict(extra="forbid")

    stack: str
    run_id: str
    started: float
    finished: float
    success: bool
    reason: str | None = None
    """Error kind of a failed run (network, disk-full, wrong-password, service-failed, ...)."""
    error: str | None = None
    attempts: int = 0
    bytes: int = 0
    bytes_added: int = 0
    services: dict[str, bool] = {}
    last_success: float | None = None
    service_last_success: dict[str, float] = {}
    check_success: bool | None = None
    check_full: bool = False
    check_time: float | None = None
    offsite_success: bool | None = None
    manifests_unreadable: int | None = None
    """Manifests in the repository the last retention pass could not read (and skipped)."""


def read_state(state_dir: str) -> RunState | None:
    """The last run's record, or None before the first run."""
    path = Path(state_dir) / STATE_FILE
    try:
        return RunState.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def write_state(state_dir: str, state: RunState) -> None:
    """Persist the record and the metrics rendered from it, each replaced atomically."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    _replace(directory / STATE_FILE, state.model_dump_json(indent=2))
    _replace(directory / METRICS_FILE, render(state))


def _replace(path: Path, text: str) -> None:
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(text)
    os.replace(partial, path)


Samples = list[tuple[str, float]]
"""(label set, value) pairs of one metric; labels without braces, e.g. `stack="prod"`."""


def _one(value: float | None) -> Callable[[str], Samples | None]:
    """The metric is one sample labelled by the stack, or absent while `value` is unknown."""
    return lambda stack: None if value is None else [(stack, float(value))]


def _gauges(state: RunState) -> list[tuple[str, str, Callable[[str], Samples | None]]]:
    """Every gauge the agent exports: name, help, and its samples given the stack's label set."""
    check_known = state.check_success is not None
    return [
        ("last_run_timestamp_seconds", "When the last backup run finished.", _one(state.finished)),
        ("last_run_success", "1 if the last run backed up every service.", _one(state.success)),
        (
            "last_run_duration_seconds",
            "Wall time of the last run, retries included.",
            _one(state.finished - state.started),
        ),
        ("last_run_attempts", "Attempts the last run needed.", _one(state.attempts)),
        ("last_run_bytes", "Bytes read from the sources by the last run.", _one(state.bytes)),
        (
            "last_run_added_bytes",
            "Bytes the repository grew by in the last run.",
            _one(state.bytes_added),
        ),
        (
            "last_success_timestamp_seconds",
            "When a run last backed up every service.",
            _one(state.last_success),
        ),
        (
            "failure",
            "1 for the reason the last run failed.",
            lambda stack: [(f'{stack},reason="{state.reason}"', 1)] if state.reason else None,
        ),
        (
            "service_success",
            "1 if the service was backed up by the last run.",
            lambda stack: [
                (f'{stack},service="{service}"', float(ok))
                for service, ok in sorted(state.services.items())
            ],
        ),
        (
            "service_last_success_timestamp_seconds",
            "When the service was last backed up.",
            lambda stack: [
                (f'{stack},service="{service}"', when)
                for service, when in sorted(state.service_last_success.items())
            ],
        ),
        (
            "check_success",
            "1 if the last restic check found no error.",
            _one(state.check_success),
        ),
        (
            "check_full",
            "1 if the last check read every pack.",
            _one(state.check_full if check_known else None),
        ),
        (
            "check_timestamp_seconds",
            "When the repository was last checked.",
            _one(state.check_time),
        ),
        (
            "offsite_success",
            "1 if the last run was copied offsite.",
            _one(state.offsite_success),
        ),
        (
            "manifest_unreadable",
            "Run manifests in the repository the agent could not read and skipped.",
            _one(state.manifests_unreadable),
        ),
    ]


def render(state: RunState) -> str:
    """Prometheus text exposition of `state`: each gauge `napdms_backup_<name>` that is known."""
    stack = f'stack="{state.stack}"'
    lines: list[str] = []
    for short_name, help_text, samples_of in _gauges(state):
        samples = samples_of(stack)
        if samples is None:
            continue
        lines += family(f"napdms_backup_{short_name}", "gauge", help_text, samples)
    return "\n".join(lines) + "\n"


def family(name: str, kind: str, help_text: str, samples: Samples) -> list[str]:
    """One metric family in the exposition format: HELP, TYPE, a line per (labels, value)."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"] + [
        f"{name}{{{labels}}} {number(value)}" for labels, value in samples
    ]


def number(value: float) -> str:
    """A sample value as the exposition format shows it (integers without a fraction)."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
