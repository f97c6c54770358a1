"""The audit trail's SSH mirror against a real sshd (the live ASUSTOR): records land there by
`cat >>` only, a cut link costs no local record and is caught up, and `verify` finds a
truncated local tail against it."""

import secrets
from pathlib import Path

import pytest

from napdms_ops.trail.mirror import REMOTE_DIR, SshMirror
from napdms_ops.trail.store import Trail
from napdms_ops.trail.verify import verify
from tests.trail_records import Warnings, record_body


@pytest.fixture
def mirrored(asustor, tmp_path):
    """A trail in tmp_path mirrored to the ASUSTOR under a stack name of its own (the sshd shares
    this host's files, so its ~ is this root's: the file is removed afterwards)."""
    stack = f"traillive{secrets.token_hex(4)}"
    argv = asustor.ssh_argv()
    warnings = Warnings()
    mirror = SshMirror(argv[-1], stack, argv[1:-1])
    trail = Trail(tmp_path / f"{stack}.jsonl", mirror, warnings)
    remote = Path.home() / REMOTE_DIR.removeprefix("~/") / f"{stack}.jsonl"
    try:
        yield stack, trail, mirror, warnings
    finally:
        remote.unlink(missing_ok=True)
        if remote.parent.is_dir() and not any(remote.parent.iterdir()):
            remote.parent.rmdir()


def test_records_reach_the_asustor_and_verify_against_it(mirrored):
    stack, trail, mirror, warnings = mirrored
    for command in ("up", "deploy", "restore"):
        trail.append(record_body(command=command, stack=stack))
    assert warnings == []
    assert mirror.read() == trail.path.read_bytes()
    verdict = verify(stack, trail.lines(), mirror.read().splitlines(), mirror.where)
    assert (verdict.exit_code, verdict.mirror_records) == (0, 3)


def test_a_cut_link_keeps_the_local_record_and_the_next_one_catches_up(mirrored, asustor):
    stack, trail, mirror, warnings = mirrored
    trail.append(record_body(command="up", stack=stack))
    asustor.cut()
    try:
        trail.append(record_body(command="deploy", stack=stack))
    finally:
        asustor.restore()
    assert len(trail.records()) == 2 and len(warnings) == 1
    assert len(mirror.read().splitlines()) == 1
    trail.append(record_body(command="rollback", stack=stack))
    assert mirror.read() == trail.path.read_bytes()


def test_a_truncated_local_tail_is_found_against_the_asustor(mirrored):
    stack, trail, mirror, _ = mirrored
    for command in ("up", "deploy", "rollback"):
        trail.append(record_body(command=command, stack=stack))
    kept = trail.lines()[:1]
    verdict = verify(stack, kept, mirror.read().splitlines(), mirror.where)
    assert [(p.kind, p.seq) for p in verdict.problems] == [("truncated", 2)]
    assert verdict.exit_code == 1
