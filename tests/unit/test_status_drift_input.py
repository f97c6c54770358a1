"""The drift `status` weighs: the newest report the drift command kept for the stack, without
the findings an operator accepted; unknown without a report."""

from datetime import UTC, datetime

from napdms_ops.drift.model import DriftReport, Finding
from napdms_ops.drift.report import Acceptance, add_accepted, fingerprint, report_document, save
from napdms_ops.status.drift_input import latest_drift


def _finding(subject: str, severity: str) -> Finding:
    return Finding(
        source="live",
        subject=subject,
        kind="container",
        field="user",
        declared="999:999",
        live="0:0",
        severity=severity,
        why="runs as another user",
    )


def _keep(state, at: datetime, findings: list[Finding], stack: str = "dev") -> None:
    """Save a report as `napdms-ops drift` does."""
    report = DriftReport(
        stack=stack,
        time=at.isoformat().replace("+00:00", "Z"),
        sources=["live"],
        findings=findings,
        containers=len(findings),
        volumes=0,
        networks=0,
        duration_s=0.1,
    )
    save(report_document(report, set()), state / "drift" / stack, at)


def _accept(state, finding: Finding) -> None:
    acceptance = Acceptance(
        fingerprint=fingerprint(finding),
        source=finding.source,
        subject=finding.subject,
        field=finding.field,
        live=finding.live,
        severity=finding.severity,
        operator="ops@example.org",
        reason="known, the vendor image needs it",
        time="2026-12-06T08:00:00Z",
    )
    add_accepted(state / "drift" / "dev", [acceptance])


def test_no_report_is_unknown_drift(tmp_path):
    assert latest_drift(tmp_path, "dev").classification == "unknown"


def test_the_newest_report_counts(tmp_path):
    _keep(tmp_path, datetime(2026, 12, 5, 8, tzinfo=UTC), [_finding("a", "major")])
    _keep(tmp_path, datetime(2026, 12, 6, 8, tzinfo=UTC), [_finding("a", "minor")])
    drift = latest_drift(tmp_path, "dev")
    assert (drift.classification, drift.time, drift.findings) == (
        "minor",
        "2026-12-06T08:00:00Z",
        1,
    )


def test_an_accepted_major_finding_does_not_count(tmp_path):
    accepted, other = _finding("a", "major"), _finding("b", "minor")
    _keep(tmp_path, datetime(2026, 12, 6, 8, tzinfo=UTC), [accepted, other])
    _accept(tmp_path, accepted)
    drift = latest_drift(tmp_path, "dev")
    assert (drift.classification, drift.major, drift.findings) == ("minor", 0, 1)


def test_an_unreadable_newest_report_is_unknown_and_says_why(tmp_path):
    _keep(tmp_path, datetime(2026, 12, 6, 8, tzinfo=UTC), [])
    (tmp_path / "drift" / "dev" / "20261206T090000Z.json").write_text('{"stack": "dev", "ti')
    drift = latest_drift(tmp_path, "dev")
    assert (drift.classification, "unreadable drift report" in drift.error) == ("unknown", True)


def test_only_the_stacks_own_reports_count(tmp_path):
    _keep(tmp_path, datetime(2026, 12, 6, 8, tzinfo=UTC), [_finding("a", "major")])
    assert latest_drift(tmp_path, "prod").classification == "unknown"
