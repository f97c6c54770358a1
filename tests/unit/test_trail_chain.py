"""The audit trail is a hash chain: every record names the hash of the one before, its own hash
is the SHA-256 of its canonical JSON, and concurrent writers never fork it."""

import hashlib
import json
import multiprocessing
import re
from datetime import UTC, datetime

import pytest

from napdms_ops.trail import TrailError, record, records
from napdms_ops.trail.chain import GENESIS
from napdms_ops.trail.store import Trail, trail_path
from napdms_ops.trail.verify import walk
from napdms_ops.workstation.state import commit as release_commit
from tests.trail_records import record_body

WRITERS = 4
EACH = 15


@pytest.fixture
def environ(tmp_path):
    """A state dir, a local mirror and an operator, all in tmp_path."""
    return {
        "NAPDMS_STATE_DIR": str(tmp_path / "state"),
        "NAPDMS_AUDIT_MIRROR": str(tmp_path / "mirror"),
        "NAPDMS_OPERATOR": "night-shift",
    }


def test_the_first_record_links_to_genesis_and_each_next_to_the_one_before(tmp_path):
    trail = Trail(tmp_path / "dev.jsonl", None)
    made = [
        trail.append(record_body(commit=None, command=name)) for name in ("up", "deploy", "drill")
    ]
    assert [r.seq for r in made] == [1, 2, 3]
    assert [r.prev for r in made] == [GENESIS, made[0].hash, made[1].hash]


def test_the_hash_is_the_sha256_of_the_sorted_compact_json_without_the_hash(tmp_path):
    trail = Trail(tmp_path / "dev.jsonl", None)
    trail.append(record_body(commit=None, changes={"b": 1, "a": [1, 2]}))
    stored = json.loads(trail.lines()[0])
    rest = {key: value for key, value in stored.items() if key != "hash"}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    assert stored["hash"] == hashlib.sha256(text.encode()).hexdigest()


def test_each_record_is_one_line_of_canonical_json(tmp_path):
    trail = Trail(tmp_path / "dev.jsonl", None)
    trail.append(record_body(commit=None))
    trail.append(record_body(commit=None, command="deploy"))
    text = (tmp_path / "dev.jsonl").read_bytes()
    lines = text.splitlines()
    assert text.endswith(b"\n") and len(lines) == 2
    assert all(
        line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":")).encode()
        for line in lines
    )


def test_a_record_says_who_which_commit_what_and_when(environ):
    made = record(
        "dev",
        "restore",
        "failed",
        service="postgres",
        changes={"snapshot": "4f1c", "volumes": ("a", "b")},
        reason="disk full",
        environ=environ,
    )
    head = release_commit()
    assert (made.operator, made.stack, made.command, made.service) == (
        "night-shift",
        "dev",
        "restore",
        "postgres",
    )
    assert (made.changes, made.result, made.reason) == (
        {"snapshot": "4f1c", "volumes": ["a", "b"]},
        "failed",
        "disk full",
    )
    assert (made.commit, made.dirty) == (
        head.removesuffix("-dirty") if head else None,
        bool(head and head.endswith("-dirty")),
    )
    assert made.time.endswith("Z")
    assert datetime.fromisoformat(made.time).utcoffset() == UTC.utcoffset(None)


def test_records_are_read_back_oldest_first(environ):
    for command in ("up", "deploy", "rollback"):
        record("dev", command, "ok", environ=environ)
    assert [(r.seq, r.command) for r in records("dev", environ)] == [
        (1, "up"),
        (2, "deploy"),
        (3, "rollback"),
    ]


def test_a_stack_without_a_trail_has_no_records(environ):
    assert records("staging", environ) == []


@pytest.mark.parametrize("stack", ["../etc", "dev prod", "", "dev;rm"])
def test_a_name_that_is_no_stack_is_refused(stack, tmp_path):
    with pytest.raises(TrailError, match="not a stack name"):
        trail_path(tmp_path, stack)


def test_an_unwritable_trail_is_one_trail_error_naming_the_fix(tmp_path):
    (tmp_path / "audit").write_text("a file where the directory should be")
    trail = Trail(tmp_path / "audit" / "dev.jsonl", None)
    with pytest.raises(TrailError, match=r"dev: .* is not recorded; set NAPDMS_STATE_DIR"):
        trail.append(record_body(commit=None))


def test_a_broken_last_line_is_chained_over_and_named_by_verify(tmp_path):
    trail = Trail(tmp_path / "dev.jsonl", None)
    trail.append(record_body(commit=None))
    with open(tmp_path / "dev.jsonl", "ab") as file:
        file.write(b"garbage\n")
    made = trail.append(record_body(commit=None, command="deploy"))
    assert made.seq == 3 and made.prev == hashlib.sha256(b"garbage").hexdigest()
    assert [(p.kind, p.line) for p in walk(trail.lines())] == [("unreadable", 2)]


def test_a_line_cut_short_stays_a_line_of_its_own(tmp_path):
    trail = Trail(tmp_path / "dev.jsonl", None)
    trail.append(record_body(commit=None))
    with open(tmp_path / "dev.jsonl", "ab") as file:
        file.write(b'{"seq":2,"ti')
    made = trail.append(record_body(commit=None, command="deploy"))
    assert [r.seq for r in trail.records()] == [1, made.seq]
    assert [(p.kind, p.line) for p in walk(trail.lines())] == [("unreadable", 2)]


def _writer(arguments):
    environ, writer = arguments
    for number in range(EACH):
        record("dev", "deploy", "ok", changes={"writer": writer, "n": number}, environ=environ)


def test_concurrent_writers_in_several_processes_keep_one_valid_chain(environ, tmp_path):
    context = multiprocessing.get_context("fork")
    with context.Pool(WRITERS) as pool:
        pool.map_async(_writer, [(environ, w) for w in range(WRITERS)]).get(timeout=120)
    lines = trail_path(tmp_path / "state", "dev").read_bytes().splitlines()
    assert walk(lines) == []
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, WRITERS * EACH + 1))
    assert (tmp_path / "mirror" / "dev.jsonl").read_bytes().splitlines() == lines


def test_the_trail_file_is_named_after_the_stack_in_the_state_dir(environ, tmp_path):
    record("staging", "rotate", "ok", environ=environ)
    assert re.fullmatch(
        r".*/state/audit/staging\.jsonl", str(trail_path(tmp_path / "state", "staging"))
    )
    assert trail_path(tmp_path / "state", "staging").is_file()
