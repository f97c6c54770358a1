"""`napdms-ops drift` and `drift accept` over fake views: exit codes, the kept report, the metric
handed over, acceptance and its audit record."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from napdms_ops.drift import report as reports
from napdms_ops.drift.commands import Seams, make_drift_app
from napdms_ops.drift.model import Finding
from napdms_ops.drift.pulumi_view import PulumiUnavailable, PulumiViewError
from napdms_ops.release.runtime import DaemonError

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
SWAPPED = Finding(
    source="live",
    subject="napdms-dev-gitea-1",
    kind="container",
    field="image",
    declared="sha256:1",
    live="sha256:9",
    severity="major",
    why="the image differs from the declared one",
)
MEMORY = Finding(
    source="pulumi",
    subject="urn:pulumi:dev::nap-dms-platform::docker:index/container:Container::redis-1",
    kind="resource",
    field="labels[0].value",
    severity="minor",
    why="a label differs",
)


@dataclass
class LiveView:
    findings: list[Finding]
    containers: int = 12
    volumes: int = 9
    networks: int = 4


@dataclass
class World:
    """The fakes behind the commands, and what they were handed."""

    tmp: object
    live: list[Finding] = field(default_factory=list)
    pulumi: list[Finding] | Exception = field(default_factory=list)
    live_error: Exception | None = None
    publish_error: Exception | None = None
    published: list[tuple[str, str]] = field(default_factory=list)
    audited: list[dict] = field(default_factory=list)
    now: datetime = NOW

    def seams(self) -> Seams:
        def live(stack):
            if self.live_error:
                raise self.live_error
            return LiveView(list(self.live))

        def pulumi(stack):
            if isinstance(self.pulumi, Exception):
                raise self.pulumi
            return list(self.pulumi)

        def publish(stack, text):
            if self.publish_error:
                raise self.publish_error
            self.published.append((stack, text))
            return "napdms-dev-node-exporter-1"

        def record(stack, command, result, **details):
            self.audited.append({"stack": stack, "command": command, "result": result, **details})

        return Seams(
            live=live,
            pulumi=pulumi,
            publish=publish,
            record=record,
            operator=lambda environ: "ops@example.org",
            now=lambda: self.now,
            environ={"NAPDMS_STATE_DIR": str(self.tmp), "COLUMNS": "160"},
        )

    def run(self, *args: str):
        return CliRunner().invoke(make_drift_app(self.seams()), list(args))

    @property
    def directory(self):
        return reports.drift_dir("dev", {"NAPDMS_STATE_DIR": str(self.tmp)})

    def saved(self) -> dict:
        path, _ = reports.latest(self.directory)
        return json.loads(path.read_text())

    def metric(self) -> list[str]:
        return self.published[-1][1].splitlines()


def test_a_clean_stack_exits_0_and_says_so_to_prometheus(tmp_path):
    world = World(tmp_path)
    result = world.run("--stack", "dev")
    assert result.exit_code == 0, result.output
    assert world.saved()["classification"] == "none"
    assert 'napdms_drift_major{stack="dev"} 0' in world.metric()


def test_a_minor_drift_exits_1(tmp_path):
    world = World(tmp_path, pulumi=[MEMORY])
    assert world.run("--stack", "dev").exit_code == 1


def test_a_major_drift_exits_2_with_both_views_in_the_report(tmp_path):
    world = World(tmp_path, live=[SWAPPED], pulumi=[MEMORY])
    result = world.run("--stack", "dev")
    assert result.exit_code == 2, result.output
    saved = world.saved()
    assert saved["sources"] == ["live", "pulumi"]
    assert [f["field"] for f in saved["findings"]] == ["image", "labels[0].value"]
    assert saved["containers"] == 12
    assert 'napdms_drift_major{stack="dev"} 1' in world.metric()


def test_json_output_is_the_kept_report(tmp_path):
    world = World(tmp_path, live=[SWAPPED])
    result = world.run("--stack", "dev", "--json")
    assert json.loads(result.stdout) == world.saved()
    assert json.loads(result.stdout)["exit_code"] == 2


def test_no_pulumi_cli_skips_its_view_and_says_why(tmp_path):
    world = World(tmp_path, pulumi=PulumiUnavailable("no Pulumi CLI on PATH"))
    result = world.run("--stack", "dev")
    assert result.exit_code == 0
    assert world.saved()["sources"] == ["live"]
    assert world.saved()["skipped"] == {"pulumi": "no Pulumi CLI on PATH"}


def test_no_pulumi_flag_skips_its_view(tmp_path):
    world = World(tmp_path, pulumi=[SWAPPED])
    assert world.run("--stack", "dev", "--no-pulumi").exit_code == 0
    assert world.saved()["skipped"] == {"pulumi": "--no-pulumi"}


def test_a_failed_pulumi_view_exits_3_but_keeps_the_live_report(tmp_path):
    world = World(tmp_path, live=[SWAPPED], pulumi=PulumiViewError("dev: the preview failed"))
    result = world.run("--stack", "dev")
    assert result.exit_code == 3
    assert "dev: the preview failed" in result.stderr
    assert world.saved()["findings"][0]["field"] == "image"
    assert 'napdms_drift_major{stack="dev"} 1' in world.metric()


def test_an_unknown_stack_exits_3_naming_it_and_the_choices(tmp_path):
    result = World(tmp_path).run("--stack", "qa")
    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert "'qa'" in line and "dev, staging, prod" in line


def test_an_unreachable_daemon_exits_3_in_one_line(tmp_path):
    world = World(tmp_path, live_error=DaemonError("DOCKER_HOST: cannot connect; start it"))
    result = world.run("--stack", "dev")
    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith("napdms-ops drift: dev: the live view failed") and "start it" in line
    assert not world.directory.exists()


def test_an_undelivered_metric_exits_3_after_keeping_the_report(tmp_path):
    error = reports.MetricError("dev: no node-exporter container on host local; deploy it")
    world = World(tmp_path, live=[SWAPPED], publish_error=error)
    result = world.run("--stack", "dev")
    assert result.exit_code == 3
    assert world.saved()["exit_code"] == 2


def test_no_metric_flag_hands_nothing_over(tmp_path):
    world = World(tmp_path, live=[SWAPPED])
    assert world.run("--stack", "dev", "--no-metric").exit_code == 2
    assert world.published == []


def test_each_run_deletes_reports_older_than_90_days(tmp_path):
    world = World(tmp_path, now=NOW - timedelta(days=91))
    world.run("--stack", "dev")
    (old,) = world.directory.glob("*.json")
    world.now = NOW
    world.run("--stack", "dev")
    assert not old.exists()
    assert len(list(world.directory.glob("*.json"))) == 1


def test_accepting_a_major_drift_audits_it_and_silences_exit_code_and_metric(tmp_path):
    world = World(tmp_path, live=[SWAPPED])
    world.run("--stack", "dev")
    result = world.run("accept", "--stack", "dev", "--reason", "vendor hotfix until 2027-01")
    assert result.exit_code == 0, result.output
    (audit,) = world.audited
    assert (audit["command"], audit["result"], audit["reason"]) == (
        "drift-accept",
        "ok",
        "vendor hotfix until 2027-01",
    )
    assert [a["field"] for a in audit["changes"]["accepted"]] == ["image"]
    assert 'napdms_drift_major{stack="dev"} 0' in world.metric()
    assert world.run("--stack", "dev").exit_code == 0
    assert world.saved()["findings"][0]["accepted"] is True


def test_an_accepted_finding_whose_live_value_changes_counts_again(tmp_path):
    world = World(tmp_path, live=[SWAPPED])
    world.run("--stack", "dev")
    world.run("accept", "--stack", "dev", "--reason", "vendor hotfix")
    world.live = [SWAPPED.model_copy(update={"live": "sha256:8"})]
    assert world.run("--stack", "dev").exit_code == 2


def test_accept_without_a_report_exits_3_with_the_fix(tmp_path):
    result = World(tmp_path).run("accept", "--stack", "dev", "--reason", "x")
    assert result.exit_code == 3
    assert "napdms-ops drift --stack dev" in result.stderr


def test_accept_with_nothing_major_records_nothing(tmp_path):
    world = World(tmp_path, pulumi=[MEMORY])
    world.run("--stack", "dev")
    assert world.run("accept", "--stack", "dev", "--reason", "x").exit_code == 0
    assert world.audited == []
    assert reports.load_accepted(world.directory) == []


def test_an_acceptance_the_trail_refuses_is_not_made(tmp_path):
    from napdms_ops.trail import TrailError

    world = World(tmp_path, live=[SWAPPED])
    world.run("--stack", "dev")
    seams = world.seams()

    def refuse(*args, **kwargs):
        raise TrailError("dev: the audit trail is broken at record 3")

    app = make_drift_app(Seams(**{**seams.__dict__, "record": refuse}))
    result = CliRunner().invoke(app, ["accept", "--stack", "dev", "--reason", "x"])
    assert result.exit_code == 3
    assert reports.load_accepted(world.directory) == []


def test_the_real_audit_trail_holds_the_acceptance(tmp_path):
    from napdms_ops.drift.commands import _record
    from napdms_ops.trail import records

    world = World(tmp_path, live=[SWAPPED])
    world.run("--stack", "dev")
    seams = world.seams()
    app = make_drift_app(Seams(**{**seams.__dict__, "record": _record}))
    result = CliRunner().invoke(app, ["accept", "--stack", "dev", "--reason", "hotfix"])
    assert result.exit_code == 0, result.output
    (entry,) = records("dev", seams.environ)
    assert (entry.command, entry.reason) == ("drift-accept", "hotfix")
    assert entry.changes["accepted"][0]["fingerprint"] == reports.fingerprint(SWAPPED)


def test_a_drift_that_went_away_and_came_back_counts_again(tmp_path):
    world = World(tmp_path, live=[SWAPPED])
    world.run("--stack", "dev")
    world.run("accept", "--stack", "dev", "--reason", "vendor hotfix")
    world.live = []
    assert world.run("--stack", "dev").exit_code == 0
    world.live = [SWAPPED]
    assert world.run("--stack", "dev").exit_code == 2


def test_a_failed_pulumi_view_and_an_undelivered_metric_are_both_reported(tmp_path):
    world = World(
        tmp_path,
        pulumi=PulumiViewError("dev: the preview failed"),
        publish_error=reports.MetricError("dev: no node-exporter container"),
    )
    result = world.run("--stack", "dev")
    assert result.exit_code == 3
    assert len(result.stderr.splitlines()) == 2
