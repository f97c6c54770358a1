"""Every record is also appended to a mirror: a local directory in dev, the stack's backup host
over SSH otherwise; a mirror that cannot be written costs no local record and is caught up."""

import os
import subprocess

import pytest

from napdms_ops.trail.mirror import (
    LocalMirror,
    MirrorError,
    SshMirror,
    UnusableMirror,
    mirror_for,
    named_mirror,
)
from napdms_ops.trail.store import Trail
from tests.trail_records import Warnings, record_body


def test_each_record_reaches_the_local_mirror_byte_for_byte(tmp_path):
    trail = Trail(tmp_path / "prod.jsonl", LocalMirror(tmp_path / "mirror", "prod"))
    for command in ("up", "deploy", "restore"):
        trail.append(record_body(stack="prod", command=command))
    assert (tmp_path / "mirror" / "prod.jsonl").read_bytes() == (
        tmp_path / "prod.jsonl"
    ).read_bytes()


def test_a_mirror_that_cannot_be_written_keeps_the_local_record_and_says_so(tmp_path):
    (tmp_path / "mirror").write_text("a file where the directory should be")
    warnings = Warnings()
    trail = Trail(tmp_path / "prod.jsonl", LocalMirror(tmp_path / "mirror", "prod"), warnings)
    made = trail.append(record_body(stack="prod", command="deploy"))
    assert [r.hash for r in trail.records()] == [made.hash]
    assert len(warnings) == 1 and str(tmp_path / "mirror") in warnings[0]


def test_the_next_record_catches_the_mirror_up(tmp_path):
    (tmp_path / "mirror").write_text("unwritable for now")
    warnings = Warnings()
    trail = Trail(tmp_path / "prod.jsonl", LocalMirror(tmp_path / "mirror", "prod"), warnings)
    trail.append(record_body(stack="prod", command="up"))
    trail.append(record_body(stack="prod", command="deploy"))
    (tmp_path / "mirror").unlink()
    trail.append(record_body(stack="prod", command="rollback"))
    assert len(warnings) == 2
    assert (tmp_path / "mirror" / "prod.jsonl").read_bytes() == (
        tmp_path / "prod.jsonl"
    ).read_bytes()


def test_a_mirror_behind_receives_only_what_it_lacks(tmp_path):
    mirror = LocalMirror(tmp_path / "mirror", "prod")
    trail = Trail(tmp_path / "prod.jsonl", mirror)
    trail.append(record_body(stack="prod", command="up"))
    Trail(tmp_path / "prod.jsonl", None).append(record_body(stack="prod", command="deploy"))
    trail.append(record_body(stack="prod", command="rollback"))
    assert mirror.read() == (tmp_path / "prod.jsonl").read_bytes()


def test_a_diverged_mirror_is_left_alone_and_said(tmp_path):
    mirror = LocalMirror(tmp_path / "mirror", "prod")
    mirror.append(b'{"seq":1,"hash":"' + b"f" * 64 + b'","prev":"' + b"0" * 64 + b'"}\n')
    before = mirror.read()
    warnings = Warnings()
    trail = Trail(tmp_path / "prod.jsonl", mirror, warnings)
    trail.append(record_body(stack="prod", command="deploy"))
    assert mirror.read() == before
    assert len(warnings) == 1 and "diverged" in warnings[0]


def _remote_shell(home):
    """A stand-in for ssh: runs the remote command with `sh` in a home of its own, recording
    each argv."""
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        env = {"HOME": str(home), "PATH": os.environ["PATH"]}
        return subprocess.run(["sh", "-c", argv[-1]], env=env, **kwargs)

    return run, calls


def test_the_ssh_mirror_appends_with_cat_only_and_never_edits(tmp_path):
    run, calls = _remote_shell(tmp_path / "home")
    mirror = SshMirror("deploy@asustor", "prod", ["-o", "ServerAliveInterval=15"], run=run)
    trail = Trail(tmp_path / "prod.jsonl", mirror)
    trail.append(record_body(stack="prod", command="up"))
    trail.append(record_body(stack="prod", command="deploy"))
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    ssh += ["-o", "ServerAliveInterval=15", "deploy@asustor"]
    file = "~/napdms-audit/prod.jsonl"
    assert calls[:2] == [
        [*ssh, f"test ! -e {file} || tail -n 1 {file}"],
        [*ssh, f"mkdir -p ~/napdms-audit && cat >> {file}"],
    ]
    assert {tuple(call[:-1]) for call in calls} == {tuple(ssh)}
    assert {call[-1] for call in calls} == {calls[0][-1], calls[1][-1]}
    remote = tmp_path / "home" / "napdms-audit" / "prod.jsonl"
    assert remote.read_bytes() == (tmp_path / "prod.jsonl").read_bytes()


def test_an_unreachable_ssh_mirror_keeps_the_local_record_and_says_so(tmp_path):
    def unreachable(argv, **kwargs):
        return subprocess.CompletedProcess(
            argv, 255, b"", b"ssh: connect to host asustor: No route"
        )

    warnings = Warnings()
    trail = Trail(tmp_path / "prod.jsonl", SshMirror("asustor", "prod", run=unreachable), warnings)
    trail.append(record_body(stack="prod", command="deploy"))
    assert len(trail.records()) == 1
    assert len(warnings) == 1 and "No route" in warnings[0]


def test_prod_mirrors_to_its_backup_host_over_ssh(tmp_path):
    mirror = mirror_for("prod", tmp_path, {})
    assert isinstance(mirror, SshMirror)
    assert (mirror.target, mirror.options) == (
        "deploy@asustor.nap-dms.example.org",
        ["-o", "ServerAliveInterval=15"],
    )


def test_dev_mirrors_to_a_local_directory_in_the_state_dir(tmp_path):
    mirror = mirror_for("dev", tmp_path, {})
    assert isinstance(mirror, LocalMirror)
    assert mirror.path == tmp_path / "audit-mirror" / "dev.jsonl"


def test_napdms_audit_mirror_names_a_directory_or_an_ssh_host(tmp_path):
    local = mirror_for("prod", tmp_path, {"NAPDMS_AUDIT_MIRROR": str(tmp_path / "m")})
    remote = named_mirror("ssh://backup@nas.lan:2222", "prod")
    assert isinstance(local, LocalMirror) and local.path == tmp_path / "m" / "prod.jsonl"
    assert (remote.target, remote.options) == ("backup@nas.lan", ["-p", "2222"])


def test_a_stack_without_a_stack_file_has_an_unusable_mirror_naming_the_fix(tmp_path):
    mirror = mirror_for("nosuchstack", tmp_path, {})
    assert isinstance(mirror, UnusableMirror)
    assert "NAPDMS_AUDIT_MIRROR" in mirror.why
    with pytest.raises(MirrorError, match="nosuchstack"):
        mirror.append(b"x\n")
