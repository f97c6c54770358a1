"""`napdms-ops audit` without a daemon: which levels judge which subject, the order and shape of
the report, the exit codes, and the one-line error when no daemon answers."""

import io
import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from napdms_ops import audit as auditing
from napdms_ops.audit import (
    AuditError,
    AuditReport,
    audit,
    default_host,
    document,
    level_text,
    summary,
    table,
)
from napdms_ops.cli import app
from napdms_ops.workstation.terminal import console
from policies.rules import (
    RULES,
    ContainerFacts,
    Mount,
    NetworkFacts,
    PublishedPort,
    StackFacts,
    VolumeFacts,
    grants,
    judge,
    levels,
)
from tests.program import ROOT

# prod grants the exemptions the tests' containers record (names as the grants' keys).
_GRANTS = {
    "x": {"no-cpu-limit": "batch"},
    "f": {"no-cpu-limit": "batch"},
    "napdms-prod-napdms-importer": {
        "no-cpu-limit": (
            "the nightly importer is CPU-bound for ten minutes and a quota would push it past "
            "the backup window; reviewed in OPS-1412"
        )
    },
}
LEVELS = {
    "prod": levels.StackLevels(
        "prod",
        settings={
            rule.id: grants.rule_grants(_GRANTS, rule.id)
            if rule.id != grants.SELF_GRANT_RULE
            else {grants.TABLE_SETTING: _GRANTS}
            for rule in RULES
        },
    ),
    "dev": levels.parse(
        "dev",
        {
            "no-pids-limit": "advisory",
            "unmanaged-container": "advisory",
            "no-log-rotation": "disabled",
            "stateless-replicas": {"enforcementLevel": "mandatory", "minReplicas": 1},
        },
    ),
}
NOWHERE = "unix:///nonexistent/napdms-audit-test.sock"


def hardened(name: str, stack: str = "prod", **changes) -> ContainerFacts:
    labels = {"napdms.managed-by": "pulumi", "napdms.stack": stack, "napdms.service": name}
    settings = dict(
        name=name,
        labels=labels,
        image="sha256:" + "a" * 64,
        user="1000:1000",
        cap_drop=("ALL",),
        memory_bytes=64 << 20,
        cpus=0.5,
        pids_limit=64,
        health_test=("CMD", "true"),
        read_only_root=True,
        security_opts=("no-new-privileges:true",),
        restart="unless-stopped",
        log_driver="json-file",
        log_opts={"max-size": "10m"},
        host="unix:///tmp/dockerd.sock",
    )
    settings.update(changes)
    return ContainerFacts(**settings)


def found(verdicts):
    """{(subject, rule id): level}"""
    return {(v.finding.subject, v.finding.rule.id): v.level for v in verdicts}


def test_a_hardened_daemon_has_no_finding():
    assert judge(StackFacts((hardened("a"), hardened("b", "dev"))), "prod", LEVELS.get) == []


def test_each_container_is_judged_at_its_own_stacks_levels():
    daemon = StackFacts(
        (hardened("p", pids_limit=0), hardened("d", "dev", pids_limit=0, log_opts={}))
    )
    assert found(judge(daemon, "prod", LEVELS.get)) == {
        ("p", "no-pids-limit"): "mandatory",
        ("d", "no-pids-limit"): "advisory",
        # no-log-rotation is disabled for dev, so not even run on d.
    }


def test_unlabelled_and_unknown_stacks_take_the_chosen_levels():
    daemon = StackFacts((ContainerFacts("bare", user="1000"), hardened("odd", "qa", pids_limit=0)))
    for stack, expected in (("prod", "mandatory"), ("dev", "advisory")):
        verdicts = found(judge(daemon, stack, LEVELS.get))
        assert verdicts[("bare", "unmanaged-container")] == expected
        assert verdicts[("odd", "no-pids-limit")] == expected
        assert ("odd", "unmanaged-container") not in verdicts  # labelled, just not a known stack


def test_an_exempted_finding_is_advisory_with_its_reason():
    container = hardened(
        "x", cpus=0.0, labels={**hardened("x").labels, "napdms.exempt.no-cpu-limit": "batch"}
    )
    (verdict,) = judge(StackFacts((container,)), "prod", LEVELS.get)
    assert (verdict.finding.rule.id, verdict.level, verdict.finding.exempt_reason) == (
        "no-cpu-limit",
        "advisory",
        "batch",
    )
    assert level_text(verdict) == "exempt"


def test_host_ports_conflict_across_stacks_and_are_reported_once():
    port = PublishedPort("", 8080, 80)
    daemon = StackFacts(
        (hardened("a-dev", "dev", ports=(port,)), hardened("b-prod", ports=(port,)))
    )
    conflicts = [
        v for v in judge(daemon, "prod", LEVELS.get) if v.finding.rule.id == "host-port-conflict"
    ]
    assert [(v.finding.subject, v.level) for v in conflicts] == [("b-prod", "mandatory")]
    assert "already published by a-dev" in conflicts[0].finding.problem


def test_volumes_and_networks_are_judged_by_their_stack_label():
    daemon = StackFacts(
        (hardened("db", "dev", mounts=(Mount("volume", "dev-data", "/data"),)),),
        volumes=(
            VolumeFacts("dev-data", {"napdms.stack": "dev", "napdms.backup": "daily"}),
            VolumeFacts("loose"),
        ),
        networks=(
            NetworkFacts("dev-data", labels={"napdms.stack": "dev", "napdms.segment": "data"}),
            NetworkFacts("stray-data", labels={"napdms.segment": "data"}),
        ),
    )
    assert found(judge(daemon, "dev", LEVELS.get)) == {
        ("loose", "volume-backup-policy"): "mandatory",
        ("dev-data", "data-network-internal"): "mandatory",
        ("stray-data", "data-network-internal"): "mandatory",
    }


def test_stateless_replicas_use_each_stacks_minimum():
    one = {"napdms.stateless": "true"}
    daemon = StackFacts(
        (
            hardened(
                "web-dev",
                "dev",
                labels={**hardened("w", "dev").labels, **one, "napdms.service": "web"},
            ),
            hardened(
                "web-prod", "prod", labels={**hardened("w").labels, **one, "napdms.service": "web"}
            ),
        )
    )
    assert found(judge(daemon, "prod", LEVELS.get)) == {
        ("web-prod", "stateless-replicas"): "mandatory"
    }


def test_the_repositorys_configs_load_and_a_missing_default_stack_is_an_error():
    assert judge(StackFacts((hardened("a"),)), "prod", levels.load) == []
    with pytest.raises(ValueError, match="qa"):
        judge(StackFacts(), "qa", LEVELS.get)


def _report(daemon: StackFacts) -> AuditReport:
    verdicts = judge(daemon, "prod", LEVELS.get)
    return AuditReport("unix:///x.sock", "prod", len(daemon.containers), 0, 0, tuple(verdicts))


def test_mandatory_findings_come_first_and_set_exit_code_1():
    flawed = hardened(
        "f",
        cpus=0.0,
        labels={**hardened("f").labels, "napdms.exempt.no-cpu-limit": "batch"},
        user="",
    )
    report = _report(StackFacts((flawed, hardened("d", "dev", pids_limit=0))))
    assert [v.level for v in report.verdicts] == ["mandatory", "advisory", "advisory"]
    assert [v.finding.rule.id for v in report.verdicts] == [
        "run-as-root",
        "no-cpu-limit",
        "no-pids-limit",
    ]
    assert report.exit_code == 1
    assert _report(StackFacts((hardened("d", "dev", pids_limit=0),))).exit_code == 0
    assert _report(StackFacts()).exit_code == 0


def test_json_document_names_rule_level_reference_and_fix():
    exempt = {**hardened("f").labels, "napdms.exempt.no-cpu-limit": "batch"}
    report = _report(StackFacts((hardened("f", privileged=True, cpus=0.0, labels=exempt),)))
    doc = json.loads(json.dumps(document(report)))
    assert (doc["containers"], doc["mandatory"], doc["advisory"]) == (1, 1, 1)
    assert doc["findings"][0] == {
        "rule": "privileged",
        "level": "mandatory",
        "severity": "critical",
        "cis": "5.5",
        "subject": "f",
        "problem": "runs privileged: every capability, every device, no seccomp or AppArmor",
        "fix": doc["findings"][0]["fix"],
        "exempt_reason": None,
    }
    assert doc["findings"][0]["fix"].startswith("remove privileged")
    assert (
        doc["findings"][1]["exempt_reason"] == "batch" and doc["findings"][1]["level"] == "advisory"
    )


def test_table_and_summary():
    from rich.console import Console

    report = _report(StackFacts((hardened("f[1]", user="root"),)))
    console = Console(width=300, record=True)
    console.print(table(report.verdicts))
    text = console.export_text()
    assert "run-as-root" in text and "4.1" in text and "f[1]" in text and "Fix: set user" in text
    assert summary(report) == (
        "unix:///x.sock: 1 containers, 0 volumes, 0 networks; 1 mandatory, 0 advisory "
        "(unmanaged judged at prod levels)"
    )


# A realistic daemon for the rendering tests: long subject names, the longest rule id, an exemption
# with a 120-character reason, and a CIS id of each width.
REASON = (
    "the nightly importer is CPU-bound for ten minutes and a quota would push it past the backup "
    "window; reviewed in OPS-1412"
)
BACKEND = "napdms-prod-napdms-backend-2"
IMPORTER = "napdms-prod-napdms-importer-1"


def _realistic_verdicts():
    exempt = {**hardened(IMPORTER).labels, "napdms.exempt.no-cpu-limit": REASON}
    data_labels = {"napdms.stack": "prod", "napdms.segment": "data"}
    daemon = StackFacts(
        (
            hardened(BACKEND, user=""),
            hardened(IMPORTER, cpus=0.0, labels=exempt),
            hardened("napdms-dev-napdms-web-1", "dev", pids_limit=0),
        ),
        networks=(NetworkFacts("napdms-prod-data", labels=data_labels),),
    )
    return judge(daemon, "prod", LEVELS.get)


def _render(verdicts, width: int = 80) -> list[str]:
    """The table as a pipe shows it, one string per line, trailing padding removed."""
    out = io.StringIO()
    console(out, {"COLUMNS": str(width)}).print(table(verdicts))
    return [line.rstrip() for line in out.getvalue().splitlines()]


def _column(lines: list[str], header: str, next_header: str = "") -> list[str]:
    """One column's text, line by line, located by its header (the table's first line)."""
    start = lines[0].index(header)
    end = lines[0].index(next_header) if next_header else None
    return [line[start:end].strip() for line in lines[2:]]


def test_table_lines_fit_80_columns():
    lines = _render(_realistic_verdicts())
    assert len(lines) > 10 and max(len(line) for line in lines) <= 80


def test_table_shows_subjects_and_rule_ids_whole():
    verdicts = _realistic_verdicts()
    first_column = _column(_render(verdicts), "subject / rule", "level")
    for verdict in verdicts:
        assert verdict.finding.subject in first_column and verdict.finding.rule.id in first_column
    assert "data-network-internal" in first_column  # the longest rule id the daemon produces


def test_table_wraps_the_whole_exemption_reason_into_the_problem_column():
    problem = " ".join(_column(_render(_realistic_verdicts()), "problem + fix"))
    assert f"exempt: {REASON}" in re.sub(r"\s+", " ", problem)


def test_table_starts_each_finding_with_its_subject_over_its_rule():
    lines = _render(_realistic_verdicts())
    assert lines[2].split()[:3] == [BACKEND, "mandatory", "4.1"]
    assert lines[3].split()[0] == "run-as-root"


def test_table_level_column_holds_one_short_word():
    lines = _render(_realistic_verdicts())
    assert set(_column(lines, "level", "CIS")) == {"mandatory", "exempt", "advisory", ""}


def test_table_leaves_the_problem_column_at_least_30_columns_at_80():
    header = _render(_realistic_verdicts())[0]
    assert 80 - header.index("problem + fix") >= 30


def test_a_subject_too_long_for_its_column_folds_instead_of_being_cut():
    name = "napdms-staging-napdms-postgres-exporter-replica-12-of-a-very-long-service"
    (verdict,) = judge(StackFacts((hardened(name, user=""),)), "prod", LEVELS.get)
    lines = _render([verdict])
    assert max(len(line) for line in lines) <= 80 and "…" not in "".join(lines)
    assert name in "".join(_column(lines, "subject / rule", "level"))


def test_a_pipe_gets_80_columns():
    assert console(io.StringIO(), {}).width == 80


def test_columns_sets_the_width_of_a_pipe():
    assert console(io.StringIO(), {"COLUMNS": "132"}).width == 132


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    verdicts = _realistic_verdicts()
    for stream, coloured in ((io.StringIO(), False), (_Terminal(), True)):
        console(stream, {}).print(table(verdicts))
        assert ("\x1b[" in stream.getvalue()) is coloured


def test_cli_prints_table_and_summary_within_80_columns_on_a_pipe(monkeypatch):
    verdicts = tuple(_realistic_verdicts())
    report = AuditReport("ssh://deploy@qnap.nap-dms.example.org", "prod", 14, 9, 6, verdicts)
    monkeypatch.setattr(auditing, "audit", lambda host, stack: report)
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, ["audit"])
    assert result.exit_code == 1
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert " ".join(lines[-2:]) == summary(report)  # the summary, wrapped after the table


def test_default_host_is_docker_host_else_the_local_socket():
    assert default_host({"DOCKER_HOST": "ssh://deploy@qnap"}) == "ssh://deploy@qnap"
    assert default_host({}) == "unix:///var/run/docker.sock"


def test_no_daemon_is_one_clear_line():
    with pytest.raises(AuditError) as error:
        audit(NOWHERE, "prod")
    message = str(error.value)
    assert "\n" not in message and message.startswith(NOWHERE + ": cannot connect")
    assert "start dockerd" in message and "--host" in message


def test_cli_exits_2_without_a_daemon_or_with_an_unknown_stack():
    result = subprocess.run(
        [sys.executable, "-m", "napdms_ops", "audit", "--host", NOWHERE],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.startswith(f"napdms-ops audit: {NOWHERE}: cannot connect")
        and result.stderr.count("\n") == 1
    )
    unknown = CliRunner().invoke(app, ["audit", "--host", NOWHERE, "--stack", "qa"])
    assert unknown.exit_code == 2 and "qa.json does not exist" in unknown.output
