"""A drift report for people, for machines and for Prometheus, kept 90 days; accepted findings.

Reports live in `<state dir>/drift/<stack>/<time>.json`, beside `accepted.json` (the findings an
operator accepted with `drift accept`). An accepted finding stays in the report, marked, but
counts neither toward the exit code nor toward the metric; once its live value changes it is a
new finding. The metric file goes to the node-exporter of the stack's primary host, whose
textfile collector hands it to Prometheus (`DriftMajor`, `DriftCheckMissing`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.model.strict import StrictModel
from napdms_ops.drift.model import DriftReport, Finding, Severity, Source

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

KEEP_DAYS = 90
"""Reports older than this are deleted at each run."""
ACCEPTED_FILE = "accepted.json"
METRIC_FILE = "napdms_drift.prom"
"""The textfile collector reads `*.prom` in its directory."""
_REPORT_NAME = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?\.json$")
_STAMP = "%Y%m%dT%H%M%SZ"


class Acceptance(StrictModel):
    """A finding an operator accepted: who, why, when, and what exactly (its fingerprint)."""

    fingerprint: str
    source: Source
    subject: str
    field: str
    live: str | None
    severity: Severity
    operator: str
    reason: str
    time: str
    """UTC, ISO 8601."""


class AcceptedFile(StrictModel):
    """`accepted.json`."""

    accepted: list[Acceptance] = []


class MetricError(Exception):
    """The metric file could not reach the monitoring stack; the message names the fix."""


def fingerprint(finding: Finding) -> str:
    """What identifies a finding across checks: where (source, subject, field) and what is
    there (live). A changed live value is another finding."""
    key = json.dumps([finding.source, finding.subject, finding.field, finding.live])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def drift_dir(stack: str, environ: Mapping[str, str] | None = None) -> Path:
    """`<state dir>/drift/<stack>`: the stack's reports and accepted findings."""
    from napdms_ops.workstation.state import state_dir

    return (state_dir(environ) if environ is not None else state_dir()) / "drift" / stack


def stamp(moment: datetime) -> str:
    """`moment` in UTC, ISO 8601 with a Z, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- acceptance -------------------------------------------------------------------------------


def load_accepted(directory: Path) -> list[Acceptance]:
    """The accepted findings (none when nothing was ever accepted)."""
    path = directory / ACCEPTED_FILE
    if not path.exists():
        return []
    return AcceptedFile.model_validate_json(path.read_text()).accepted


def _write_accepted(directory: Path, accepted: list[Acceptance]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{ACCEPTED_FILE}.tmp"
    temporary.write_text(AcceptedFile(accepted=accepted).model_dump_json(indent=2) + "\n")
    temporary.replace(directory / ACCEPTED_FILE)


def acceptances(
    report: DriftReport, directory: Path, operator: str, reason: str, now: datetime
) -> list[Acceptance]:
    """`report`'s major findings not accepted yet, as acceptances by `operator` (nothing is
    written: `add_accepted` does, once the audit trail holds them)."""
    known = {a.fingerprint for a in load_accepted(directory)}
    new = {
        fingerprint(f): Acceptance(
            fingerprint=fingerprint(f),
            source=f.source,
            subject=f.subject,
            field=f.field,
            live=f.live,
            severity=f.severity,
            operator=operator,
            reason=reason,
            time=stamp(now),
        )
        for f in report.findings
        if f.severity == "major" and fingerprint(f) not in known
    }
    return list(new.values())


def add_accepted(directory: Path, new: list[Acceptance]) -> None:
    """Add `new` to `accepted.json`."""
    _write_accepted(directory, load_accepted(directory) + new)


def forget_resolved(report: DriftReport, directory: Path) -> list[Acceptance]:
    """Drop acceptances of findings that the views which ran no longer report, so the same drift
    coming back later is new; returns those dropped. A view that did not run forgets nothing."""
    accepted = load_accepted(directory)
    present = {fingerprint(f) for f in report.findings}
    kept = [a for a in accepted if a.fingerprint in present or a.source not in report.sources]
    if len(kept) != len(accepted):
        _write_accepted(directory, kept)
    return [a for a in accepted if a not in kept]


def counted(report: DriftReport, accepted: set[str]) -> DriftReport:
    """`report` without the accepted findings: its classification and exit code are the ones
    that count."""
    return report.model_copy(
        update={"findings": [f for f in report.findings if fingerprint(f) not in accepted]}
    )


# -- JSON, storage and retention ----------------------------------------------------------------


def report_document(report: DriftReport, accepted: set[str]) -> dict[str, Any]:
    """The report as JSON: every finding with its fingerprint and whether it is accepted, and
    the classification and exit code that count (accepted findings left out)."""
    document = report.model_dump(mode="json")
    for finding, entry in zip(report.findings, document["findings"], strict=True):
        entry["fingerprint"] = fingerprint(finding)
        entry["accepted"] = entry["fingerprint"] in accepted
    effective = counted(report, accepted)
    document["classification"] = effective.classification
    document["exit_code"] = effective.exit_code
    return document


def save(document: Mapping[str, Any], directory: Path, now: datetime) -> Path:
    """Write the report as `<time>.json` in `directory` (a second run within the same second
    gets `-2`, `-3`, ...); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    base = now.astimezone(UTC).strftime(_STAMP)
    path, n = directory / f"{base}.json", 1
    while path.exists():
        n += 1
        path = directory / f"{base}-{n}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _reports(directory: Path) -> list[tuple[datetime, int, Path]]:
    found = []
    for path in directory.glob("*.json") if directory.is_dir() else ():
        if match := _REPORT_NAME.match(path.name):
            moment = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
            found.append((moment, int(match[2] or 1), path))
    return sorted(found)


def prune(directory: Path, now: datetime, keep_days: int = KEEP_DAYS) -> list[Path]:
    """Delete the reports older than `keep_days` (by the time in their name); returns them."""
    cutoff = now - timedelta(days=keep_days)
    old = [path for moment, _, path in _reports(directory) if moment < cutoff]
    for path in old:
        path.unlink()
    return old


def latest(directory: Path) -> tuple[Path, DriftReport] | None:
    """The newest saved report, None when there is none."""
    reports = _reports(directory)
    if not reports:
        return None
    path = reports[-1][2]
    document = json.loads(path.read_text())
    fields = set(DriftReport.model_fields)
    finding_fields = set(Finding.model_fields)
    document = {k: v for k, v in document.items() if k in fields}
    document["findings"] = [
        {k: v for k, v in f.items() if k in finding_fields} for f in document["findings"]
    ]
    return path, DriftReport.model_validate(document)


# -- the metric --------------------------------------------------------------------------------


def metric_text(report: DriftReport, accepted: set[str], checked: datetime) -> str:
    """The Prometheus text file of the check: findings by severity and a 0/1 major flag, both
    without the accepted findings, the accepted count, and when the check ran."""
    counting = counted(report, accepted)
    label = f'stack="{report.stack}"'
    by_severity = {s: sum(f.severity == s for f in counting.findings) for s in ("minor", "major")}
    taken = len(report.findings) - len(counting.findings)
    lines = [
        "# HELP napdms_drift_findings Findings of the last drift check, accepted ones left out.",
        "# TYPE napdms_drift_findings gauge",
        *(f'napdms_drift_findings{{{label},severity="{s}"}} {n}' for s, n in by_severity.items()),
        "# HELP napdms_drift_accepted_findings Findings of the last check an operator accepted.",
        "# TYPE napdms_drift_accepted_findings gauge",
        f"napdms_drift_accepted_findings{{{label}}} {taken}",
        "# HELP napdms_drift_major 1 when the last drift check found a major drift not accepted.",
        "# TYPE napdms_drift_major gauge",
        f"napdms_drift_major{{{label}}} {int(counting.classification == 'major')}",
        "# HELP napdms_drift_last_check_timestamp_seconds When the last drift check ran.",
        "# TYPE napdms_drift_last_check_timestamp_seconds gauge",
        f"napdms_drift_last_check_timestamp_seconds{{{label}}} {checked.timestamp():.0f}",
    ]
    return "\n".join(lines) + "\n"


def publish_metric(stack: str, text: str, client: Any = None) -> str | None:
    """Copy the metric file into the textfile volume of the node-exporter on `stack`'s primary
    host (a volume mount takes a copy although the container's root is read-only); returns the
    container's name, None when the stack runs no node-exporter. Raises `MetricError`."""
    from docker.errors import DockerException
    from requests import RequestException

    from components.catalog.node_exporter import SPEC, TEXTFILE_DIR
    from components.settings import read_stack
    from napdms_ops.release.runtime import connect
    from policies.rules.names import HOST_LABEL, SERVICE_LABEL, STACK_LABEL

    resolved = read_stack(stack)
    if SPEC.name not in resolved.services:
        return None
    primary = resolved.settings.host_for_role("primary")
    try:
        client = client or connect(resolved.settings.hosts[primary].docker_host)
        found = client.containers.list(
            all=True,
            filters={
                "label": [
                    f"{STACK_LABEL}={stack}",
                    f"{SERVICE_LABEL}={SPEC.name}",
                    f"{HOST_LABEL}={primary}",
                ]
            },
        )
        if not found:
            raise MetricError(
                f"{stack}: no {SPEC.name} container on host {primary} to hand the drift metric "
                f"to; deploy it with `napdms-ops up --stack {stack}`, or run with --no-metric"
            )
        found[0].put_archive(TEXTFILE_DIR, _tar(METRIC_FILE, text.encode()))
    except (DockerException, RequestException) as error:
        raise MetricError(
            f"{stack}: cannot copy the drift metric to {SPEC.name} on host {primary} "
            f"({' '.join(str(error).split())}); check its Docker daemon, or run with --no-metric"
        ) from None
    return found[0].name


def _tar(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o644  # node-exporter reads it as nobody
        info.mtime = int(time.time())  # node_textfile_mtime_seconds: when the check wrote it
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


# -- for people --------------------------------------------------------------------------------


def _subject(finding: Finding) -> str:
    # A URN's last part (`type::name`) identifies the resource; the JSON keeps the whole URN.
    parts = finding.subject.split("::")
    if finding.source != "pulumi" or len(parts) < 4:
        return finding.subject
    return f"{parts[2].rsplit('$', 1)[-1]}::{'::'.join(parts[3:])}"


def table(report: DriftReport, accepted: set[str]) -> Table:
    """The findings, major first: severity, source, subject, field, declared, live, why."""
    from rich import box
    from rich.table import Table

    grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, show_lines=True)
    for column in ("severity", "source", "subject", "field", "declared", "live", "why"):
        grid.add_column(column, overflow="fold")
    order = sorted(report.findings, key=lambda f: (f.severity != "major", f.source, f.subject))
    for finding in order:
        severity = finding.severity
        if fingerprint(finding) in accepted:
            severity += " (accepted)"
        grid.add_row(
            severity,
            finding.source,
            _subject(finding),
            finding.field,
            finding.declared or "",
            finding.live or "",
            finding.why,
        )
    return grid


def summary(report: DriftReport, accepted: set[str]) -> str:
    """One line: the classification that counts, the counts, and the views that did not run."""
    effective = counted(report, accepted)
    counts = {s: sum(f.severity == s for f in effective.findings) for s in ("major", "minor")}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    if taken := len(report.findings) - len(effective.findings):
        parts.append(f"{taken} accepted")
    line = (
        f"{report.stack}: drift {effective.classification}"
        + (f" ({', '.join(parts)})" if parts else "")
        + f"; {report.containers} containers, {report.volumes} volumes, {report.networks} "
        f"networks checked in {report.duration_s:.1f} s"
    )
    skipped = "; ".join(f"{view} view skipped: {why}" for view, why in report.skipped.items())
    return f"{line}; {skipped}" if skipped else line


def print_report(report: DriftReport, accepted: set[str], out: Console) -> None:
    """The table (when there are findings), then the summary line."""
    from rich.text import Text

    if report.findings:
        out.print(table(report, accepted))
        out.print()
    out.print(Text(summary(report, accepted)))
