"""The release audit trail: JSON lines with exactly the contract's fields, who and which commit."""

import json
import subprocess
from datetime import UTC, datetime

from napdms_ops.release.journal import Journal, commit, operator, state_dir

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


def test_a_record_is_one_json_line_with_exactly_the_contract_fields(tmp_path):
    journal = Journal(
        tmp_path,
        "dev",
        "ops@example.org",
        "abc",
        now=lambda: datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
    )
    _append(journal)
    line = (tmp_path / "audit" / "dev.jsonl").read_text().splitlines()
    assert list(json.loads(line[0])) == FIELDS
    assert json.loads(line[0])["time"] == "2026-12-01T09:30:00.000Z"


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
