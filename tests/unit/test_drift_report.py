"""Drift reports: what counts toward the exit code and the metric, what acceptance covers, how
long reports are kept, and the metric file Prometheus reads."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime, timedelta

import pytest

from napdms_ops.drift import report as reports
from napdms_ops.drift.model import DriftReport, Finding

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


def finding(
    field: str = "image", severity: str = "major", live: str | None = "sha256:9"
) -> Finding:
    return Finding(
        source="live",
        subject="napdms-dev-gitea-1",
        kind="container",
        field=field,
        declared="sha256:1",
        live=live,
        severity=severity,
        why="the image differs from the declared one; `pulumi up` puts it back",
    )


def drift(*findings: Finding, sources=("live",)) -> DriftReport:
    return DriftReport(
        stack="dev",
        time=reports.stamp(NOW),
        sources=list(sources),
        findings=list(findings),
        containers=3,
        volumes=2,
        networks=1,
        duration_s=0.5,
    )


def _accept(report: DriftReport, directory, now=NOW) -> list[reports.Acceptance]:
    new = reports.acceptances(report, directory, "ops@example.org", "vendor hotfix", now)
    reports.add_accepted(directory, new)
    return new


def test_an_accepted_major_finding_no_longer_counts(tmp_path):
    report = drift(finding(), finding("env", "minor", "A"))
    _accept(report, tmp_path)
    accepted = {a.fingerprint for a in reports.load_accepted(tmp_path)}
    assert report.exit_code == 2
    assert reports.counted(report, accepted).exit_code == 1


def test_only_major_findings_are_accepted(tmp_path):
    (acceptance,) = _accept(drift(finding(), finding("env", "minor", "A")), tmp_path)
    assert (acceptance.field, acceptance.operator, acceptance.reason) == (
        "image",
        "ops@example.org",
        "vendor hotfix",
    )


def test_accepting_twice_records_a_finding_once(tmp_path):
    report = drift(finding())
    _accept(report, tmp_path)
    assert _accept(report, tmp_path) == []
    assert len(reports.load_accepted(tmp_path)) == 1


def test_a_finding_whose_live_value_changes_again_is_new(tmp_path):
    _accept(drift(finding(live="sha256:9")), tmp_path)
    accepted = {a.fingerprint for a in reports.load_accepted(tmp_path)}
    assert reports.counted(drift(finding(live="sha256:8")), accepted).exit_code == 2


def test_an_acceptance_is_forgotten_once_its_drift_is_gone(tmp_path):
    _accept(drift(finding()), tmp_path)
    reports.forget_resolved(drift(), tmp_path)
    accepted = {a.fingerprint for a in reports.load_accepted(tmp_path)}
    assert reports.counted(drift(finding()), accepted).exit_code == 2


def test_a_view_that_did_not_run_forgets_no_acceptance(tmp_path):
    pulumi_finding = finding().model_copy(update={"source": "pulumi", "kind": "resource"})
    _accept(drift(pulumi_finding, sources=("live", "pulumi")), tmp_path)
    reports.forget_resolved(drift(sources=("live",)), tmp_path)
    assert len(reports.load_accepted(tmp_path)) == 1


def test_the_json_marks_accepted_findings_and_gives_the_exit_code_that_counts(tmp_path):
    report = drift(finding(), finding("env", "minor", "A"))
    (acceptance,) = _accept(report, tmp_path)
    document = reports.report_document(report, {acceptance.fingerprint})
    assert [f["accepted"] for f in document["findings"]] == [True, False]
    assert (document["classification"], document["exit_code"]) == ("minor", 1)


def test_a_saved_report_reads_back_as_the_latest(tmp_path):
    report = drift(finding())
    reports.save(reports.report_document(report, set()), tmp_path, NOW - timedelta(hours=1))
    newest = reports.save(reports.report_document(drift(), set()), tmp_path, NOW)
    path, read = reports.latest(tmp_path)
    assert path == newest
    assert read == drift()


def test_two_reports_in_the_same_second_are_both_kept_in_order(tmp_path):
    first = reports.save(reports.report_document(drift(finding()), set()), tmp_path, NOW)
    second = reports.save(reports.report_document(drift(), set()), tmp_path, NOW)
    assert first.exists() and first != second
    assert reports.latest(tmp_path) == (second, drift())


def test_reports_older_than_90_days_are_deleted(tmp_path):
    old = reports.save({}, tmp_path, NOW - timedelta(days=91))
    kept = reports.save({}, tmp_path, NOW - timedelta(days=89))
    (tmp_path / reports.ACCEPTED_FILE).write_text('{"accepted": []}')
    assert reports.prune(tmp_path, NOW) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([kept.name, "accepted.json"])


def test_the_metric_leaves_accepted_findings_out(tmp_path):
    report = drift(finding(), finding("env", "minor", "A"))
    (acceptance,) = _accept(report, tmp_path)
    text = reports.metric_text(report, {acceptance.fingerprint}, NOW)
    assert 'napdms_drift_major{stack="dev"} 0' in text.splitlines()
    assert 'napdms_drift_findings{stack="dev",severity="minor"} 1' in text.splitlines()
    assert 'napdms_drift_findings{stack="dev",severity="major"} 0' in text.splitlines()
    assert 'napdms_drift_accepted_findings{stack="dev"} 1' in text.splitlines()


def test_the_metric_flags_a_major_drift_and_the_time_of_the_check():
    lines = reports.metric_text(drift(finding()), set(), NOW).splitlines()
    assert 'napdms_drift_major{stack="dev"} 1' in lines
    assert (
        f'napdms_drift_last_check_timestamp_seconds{{stack="dev"}} {NOW.timestamp():.0f}' in lines
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus)")
def test_the_metric_file_is_valid_prometheus_text():
    text = reports.metric_text(drift(finding()), set(), NOW)
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


class FakeContainer:
    name = "napdms-dev-node-exporter-1"

    def __init__(self):
        self.archives: list[tuple[str, bytes]] = []

    def put_archive(self, path: str, data: bytes) -> bool:
        self.archives.append((path, data))
        return True


class FakeClient:
    def __init__(self, containers):
        self._containers = containers
        self.filters = None
        self.containers = self

    def list(self, all: bool, filters: dict):
        self.filters = filters
        return self._containers


def test_the_metric_goes_into_the_textfile_directory_of_the_primary_hosts_exporter():
    from components.catalog.node_exporter import SPEC, TEXTFILE_DIR

    container = FakeContainer()
    client = FakeClient([container])
    assert reports.publish_metric("dev", "x 1\n", client) == container.name
    ((path, data),) = container.archives
    assert path == TEXTFILE_DIR
    assert f"--collector.textfile.directory={TEXTFILE_DIR}" in SPEC.command
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        (member,) = archive.getmembers()
        assert member.name.endswith(".prom")
        assert member.mode & 0o004  # readable by the exporter's user
        assert archive.extractfile(member).read() == b"x 1\n"
    assert "napdms.service=node-exporter" in client.filters["label"]
    assert "napdms.stack=dev" in client.filters["label"]


def test_no_exporter_to_hand_the_metric_to_is_an_error_with_the_fix():
    with pytest.raises(reports.MetricError, match=r"^dev: no node-exporter .*napdms-ops up"):
        reports.publish_metric("dev", "x 1\n", FakeClient([]))


def test_the_textfile_volume_is_explicitly_left_out_of_backups():
    from components.catalog.node_exporter import SPEC

    (volume,) = SPEC.volumes
    assert volume.backup.policy == "exclude"
    assert volume.backup.reason
