"""The release records: exactly the contract's fields, who and which commit, kept as records of
the stack's hash-chained audit trail."""

import json
import subprocess
from datetime import UTC, datetime

from napdms_ops.release.journal import RELEASE_FIELDS, AuditRecord, Journal
from napdms_ops.trail import record
from napdms_ops.trail.verify import walk
from napdms_ops.workstation.state import commit, operator, state_dir

FIELDS = [
    "time",
    "operator",
    "commit",
    "stack",
    "action",
    "service",
    "strategy",
    "from_digest",
    "to_digest",
    "from_colour",
    "to_colour",
    "duration_s",
    "result",
    "reason",
]


def _append(journal: Journal, **changes):
    fields = dict(
        action="deploy",
        service="gitea",
        strategy="held",
        from_digest="1.24.6",
        to_digest="1.24.7",
        from_colour=None,
        to_colour=None,
        duration_s=12.5,
        result="ok",
        reason=None,
    )
    return journal.append(**{**fields, **changes})


def test_a_release_record_has_exactly_the_contract_fields(tmp_path):
    journal = Journal(
        tmp_path,
        "dev",
        "ops@example.org",
        "abc",
        now=lambda: datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    )
    made = _append(journal)
    assert list(AuditRecord.model_fields) == FIELDS
    assert list(journal.records()[0].model_dump()) == FIELDS
    assert made.time == "2026-12-01T09:30:00.000Z"


def test_a_release_record_is_one_line_of_the_stacks_hash_chained_trail(tmp_path):
    journal = Journal(tmp_path, "dev", "ops", "abc-dirty")
    _append(journal, action="switch", from_colour="blue", to_colour="green")
    _append(journal)
    lines = (tmp_path / "audit" / "dev.jsonl").read_bytes().splitlines()
    first = json.loads(lines[0])
    assert (first["command"], first["commit"], first["dirty"]) == ("switch", "abc", True)
    assert set(first["changes"]) == set(RELEASE_FIELDS)
    assert len(lines) == 2 and walk(lines) == []


def test_release_records_read_back_equal_what_was_appended(tmp_path):
    journal = Journal(tmp_path, "dev", "ops", "abc-dirty")
    made = [_append(journal), _append(journal, action="rollback", result="refused", reason="x")]
    assert journal.records() == made


def test_other_commands_on_the_trail_are_not_release_records(tmp_path):
    journal = Journal(tmp_path, "dev", "ops", None)
    _append(journal, to_digest="1.24.7")
    record("dev", "up", "ok", environ={"NAPDMS_STATE_DIR": str(tmp_path)})
    assert [r.action for r in journal.records()] == ["deploy"]
    assert journal.last("gitea", action="deploy").to_digest == "1.24.7"


def test_records_are_appended_and_read_back_oldest_first(tmp_path):
    journal = Journal(tmp_path, "dev", "ops", None)
    _append(journal, service="gitea")
    _append(journal, service="n8n", result="refused", reason="unhealthy")
    assert [(r.service, r.result) for r in journal.records()] == [
        ("gitea", "ok"),
        ("n8n", "refused"),
    ]


def test_the_operator_is_napdms_operator_first(tmp_path):
    assert operator({"NAPDMS_OPERATOR": "night-shift"}, tmp_path) == "night-shift"


def test_without_git_the_operator_is_user_at_host(tmp_path):
    assert "@" in operator({}, tmp_path)


def test_the_commit_is_none_outside_git(tmp_path):
    assert commit(tmp_path) is None


def test_the_commit_is_marked_dirty_when_the_tree_differs(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("1")
    git("add", "f")
    git("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "one")
    clean = commit(tmp_path)
    (tmp_path / "f").write_text("2")
    assert (len(clean), commit(tmp_path)) == (40, f"{clean}-dirty")


def test_the_state_dir_is_napdms_state_dir_else_home(tmp_path):
    assert state_dir({"NAPDMS_STATE_DIR": str(tmp_path)}) == tmp_path
    assert state_dir({}).name == ".napdms"
