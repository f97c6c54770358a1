"""One deploy at a time per stack: the lock file, its contention message and stale takeover."""

import json
from datetime import UTC, datetime

import pytest

from napdms_ops.release.lock import LockHeld, StackLock, lock_path, read_lock, unlock

SINCE = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def _lock(tmp_path, operator="alice@example.org", pid=111, host="admin-1", alive=lambda p: True):
    return StackLock(
        tmp_path,
        "prod",
        operator,
        "napdms-ops deploy gitea",
        host=host,
        pid=pid,
        now=lambda: SINCE,
        alive=alive,
    )


def test_the_lock_file_names_operator_host_pid_command_and_since(tmp_path):
    with _lock(tmp_path):
        record = json.loads(lock_path(tmp_path, "prod").read_text())
    assert {k: record[k] for k in ("operator", "host", "pid", "command", "since")} == {
        "operator": "alice@example.org",
        "host": "admin-1",
        "pid": 111,
        "command": "napdms-ops deploy gitea",
        "since": "2026-12-01T09:30:00Z",
    }


def test_a_second_deploy_is_refused_naming_the_holder_since_when_and_the_fix(tmp_path):
    with _lock(tmp_path), pytest.raises(LockHeld) as refused:
        with _lock(tmp_path, operator="bob@example.org", pid=222):
            pass
    message = str(refused.value)
    assert message.startswith("prod: locked by alice@example.org")
    assert "since 2026-12-01T09:30:00Z" in message
    assert "napdms-ops unlock --stack prod" in message


def test_the_lock_is_released_when_the_command_fails(tmp_path):
    with pytest.raises(ValueError), _lock(tmp_path):
        raise ValueError("boom")
    assert read_lock(tmp_path, "prod") is None


def test_a_lock_whose_process_is_gone_is_taken_over_and_the_record_says_so(tmp_path):
    lock_path(tmp_path, "prod").parent.mkdir(parents=True)
    lock_path(tmp_path, "prod").write_text(
        json.dumps(
            {
                "operator": "carol",
                "host": "admin-1",
                "pid": 999,
                "command": "x",
                "since": "2026-11-30T00:00:00Z",
            }
        )
    )
    with _lock(tmp_path, alive=lambda pid: pid != 999) as lock:
        assert lock.record.took_over["operator"] == "carol"
        assert read_lock(tmp_path, "prod").took_over["pid"] == 999


def test_a_lock_held_on_another_host_is_never_taken_over(tmp_path):
    with _lock(tmp_path, host="admin-2"), pytest.raises(LockHeld):
        with _lock(tmp_path, alive=lambda pid: False):
            pass


def test_unlock_removes_the_lock_and_says_whose_it_was(tmp_path):
    with _lock(tmp_path):
        removed = unlock(tmp_path, "prod")
    assert removed.operator == "alice@example.org"
    assert read_lock(tmp_path, "prod") is None


def test_deploy_all_holds_the_lock_once_across_services(tmp_path):
    lock = _lock(tmp_path)
    with lock, lock:
        pass
    assert read_lock(tmp_path, "prod") is None
