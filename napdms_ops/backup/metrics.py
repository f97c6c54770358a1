"""The agent's state after each run, as a JSON record and as Prometheus metrics.

Alerts read these: no success for more than a day, a failed run (with its reason: network,
disk-full, wrong-password, ...), a failed service, a failed integrity check or offsite copy.
"""

from __future__ import annotations

import os
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


def render(state: RunState) -> str:
    """Prometheus text exposition of `state`."""
    stack = f'stack="{state.stack}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lines.append(f"{name}{{{labels}}} {_number(value)}")

    metric(
        "napdms_backup_last_run_timestamp_seconds",
        "gauge",
        "When the last backup run finished.",
        [(stack, state.finished)],
    )
    metric(
        "napdms_backup_last_run_success",
        "gauge",
        "1 if the last run backed up every service.",
        [(stack, float(state.success))],
    )
    metric(
        "napdms_backup_last_run_duration_seconds",
        "gauge",
        "Wall time of the last run, retries included.",
        [(stack, state.finished - state.started)],
    )
    metric(
        "napdms_backup_last_run_attempts",
        "gauge",
        "Attempts the last run needed.",
        [(stack, state.attempts)],
    )
    metric(
        "napdms_backup_last_run_bytes",
        "gauge",
        "Bytes read from the sources by the last run.",
        [(stack, state.bytes)],
    )
    metric(
        "napdms_backup_last_run_added_bytes",
        "gauge",
        "Bytes the repository grew by in the last run.",
        [(stack, state.bytes_added)],
    )
    if state.last_success is not None:
        metric(
            "napdms_backup_last_success_timestamp_seconds",
            "gauge",
            "When a run last backed up every service.",
            [(stack, state.last_success)],
        )
    if state.reason:
        metric(
            "napdms_backup_failure",
            "gauge",
            "1 for the reason the last run failed.",
            [(f'{stack},reason="{state.reason}"', 1)],
        )
    metric(
        "napdms_backup_service_success",
        "gauge",
        "1 if the service was backed up by the last run.",
        [
            (f'{stack},service="{service}"', float(ok))
            for service, ok in sorted(state.services.items())
        ],
    )
    metric(
        "napdms_backup_service_last_success_timestamp_seconds",
        "gauge",
        "When the service was last backed up.",
        [
            (f'{stack},service="{service}"', when)
            for service, when in sorted(state.service_last_success.items())
        ],
    )
    if state.check_success is not None:
        metric(
            "napdms_backup_check_success",
            "gauge",
            "1 if the last restic check found no error.",
            [(stack, float(state.check_success))],
        )
        metric(
            "napdms_backup_check_full",
            "gauge",
            "1 if the last check read every pack.",
            [(stack, float(state.check_full))],
        )
    if state.check_time is not None:
        metric(
            "napdms_backup_check_timestamp_seconds",
            "gauge",
            "When the repository was last checked.",
            [(stack, state.check_time)],
        )
    if state.offsite_success is not None:
        metric(
            "napdms_backup_offsite_success",
            "gauge",
            "1 if the last run was copied offsite.",
            [(stack, float(state.offsite_success))],
        )
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"
