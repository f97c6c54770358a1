"""`audit-log verify` names the record that was edited, inserted, deleted or moved, and against
the mirror a truncated tail or a diverging record."""

import json

import pytest

from napdms_ops.trail.chain import canonical, digest
from napdms_ops.trail.store import Trail
from napdms_ops.trail.verify import compare, verify, walk

COUNT = 6


@pytest.fixture
def lines(tmp_path) -> list[bytes]:
    """A sound trail of COUNT records, as its lines."""
    trail = Trail(tmp_path / "dev.jsonl", None)
    for number in range(COUNT):
        trail.append(
            {
                "time": f"2026-12-01T09:3{number}:00.000Z",
                "operator": "ops",
                "commit": "abc",
                "dirty": False,
                "stack": "dev",
                "command": "deploy",
                "service": "gitea",
                "changes": {"to_digest": f"1.24.{number}"},
                "result": "ok",
                "reason": None,
            }
        )
    return trail.lines()


def _fields(line: bytes) -> dict:
    return json.loads(line)


def _line(fields: dict, rehash: bool = False) -> bytes:
    return canonical({**fields, "hash": digest(fields)} if rehash else fields)


def _found(problems) -> list[tuple[str, str, int | None]]:
    return [(p.where, p.kind, p.seq) for p in problems]


def test_a_sound_trail_has_no_problems(lines):
    assert walk(lines) == []
    assert verify("dev", lines, lines, "mirror").exit_code == 0


def test_an_edited_record_is_named(lines):
    edited = {**_fields(lines[2]), "result": "failed"}
    lines[2] = _line(edited)
    assert _found(walk(lines)) == [("local", "edited", 3)]
    assert walk(lines)[0].line == 3


def test_an_edited_record_with_its_hash_recomputed_is_named(lines):
    lines[2] = _line({**_fields(lines[2]), "operator": "someone-else"}, rehash=True)
    assert _found(walk(lines)) == [("local", "edited", 3)]


def test_an_inserted_record_is_named(lines):
    # A forged seq 4 that links to seq 3 like the genuine one, put before the genuine one.
    forged = {**_fields(lines[3]), "command": "rollback"}
    lines.insert(3, _line(forged, rehash=True))
    problems = walk(lines)
    assert _found(problems) == [("local", "inserted", 4)]
    assert problems[0].line == 4


def test_a_deleted_record_is_named(lines):
    del lines[3]
    assert _found(walk(lines)) == [("local", "deleted", 4)]


def test_a_deleted_first_record_is_named(lines):
    del lines[0]
    assert _found(walk(lines)) == [("local", "deleted", 1)]


def test_reordered_records_are_named(lines):
    lines[2], lines[3] = lines[3], lines[2]
    assert _found(walk(lines)) == [("local", "reordered", 3)]


def test_a_line_that_is_no_record_is_named(lines):
    lines[1] = b'{"seq": "two"'
    problems = walk(lines)
    assert [(p.kind, p.line) for p in problems] == [("unreadable", 2)]


def test_a_truncated_tail_is_invisible_alone_and_named_against_the_mirror(lines):
    kept = lines[:-2]
    assert walk(kept) == []
    assert _found(compare(kept, lines)) == [("local", "truncated", COUNT - 1)]
    assert verify("dev", kept, lines, "mirror").exit_code == 1


def test_a_rewritten_tail_diverges_from_the_mirror(lines):
    rewritten = [*lines[:-1], _line({**_fields(lines[-1]), "reason": "quiet"}, rehash=True)]
    assert walk(rewritten) == []
    problems = compare(rewritten, lines)
    assert _found(problems) == [("local", "diverged", COUNT)]
    assert "reason" in problems[0].detail


def test_records_the_mirror_has_not_received_yet_are_not_tampering(lines):
    verdict = verify("dev", lines, lines[:-1], "mirror")
    assert _found(verdict.problems) == [("mirror", "unmirrored", COUNT)]
    assert (verdict.tampered, verdict.exit_code) == (False, 0)


def test_an_edited_mirror_is_named_as_the_mirror(lines):
    mirror = list(lines)
    mirror[1] = _line({**_fields(lines[1]), "service": "n8n"})
    assert _found(compare(lines, mirror)) == [("mirror", "edited", 2), ("local", "diverged", 2)]


def test_a_mirror_that_cannot_be_read_is_an_error_not_a_pass(lines):
    verdict = verify("dev", lines, None, "asustor", "ssh exited 255")
    assert (verdict.tampered, verdict.exit_code) == (False, 2)
