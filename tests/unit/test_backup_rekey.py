"""Rotating `restic-password`: the rekey steps against a fake restic, stopped at every point, and
the program handing the agent the current and the previous password (under Pulumi mocks)."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import subprocess
from zoneinfo import ZoneInfo

import pytest

from components.model.plan import PLAN_FILE, BackupPlan, Repository
from napdms_ops.backup import agent
from napdms_ops.backup.rekey import NeitherOpens, rekey, rekey_plan
from napdms_ops.backup.restic import Key, Restic, ResticError
from tests.program import is_secret, labels_of, mock_password, run_program, stack_config

OLD, NEW = "old password", "new password"
CURRENT, PREVIOUS = "/run/secrets/restic-password", "/run/secrets/restic-password-previous"


class Interrupted(Exception):
    """The agent died here (killed, power cut)."""


class FakeRepository:
    """A repository's keys (id -> password), checking after each change that one of the two
    passwords of the rotation still opens it."""

    def __init__(self, *passwords: str):
        self._ids = (f"k{n}" for n in itertools.count())
        self.keys = {next(self._ids): p for p in passwords}
        self.exists = True

    def opens(self, password: str) -> bool:
        return password in self.keys.values()

    def add(self, password: str) -> None:
        self.keys[next(self._ids)] = password
        self.check()

    def remove(self, key_id: str) -> None:
        del self.keys[key_id]
        self.check()

    def check(self) -> None:
        assert self.opens(OLD) or self.opens(NEW), "neither password opens the repository"


class FakeRestic:
    """`Restic`'s key methods over a `FakeRepository`; `files` maps password files to contents.
    `crash_before` names a method that dies before it changes anything."""

    def __init__(self, repo, files, password_file=CURRENT, crash_before=None):
        self.repo, self.files, self.crash_before = repo, files, crash_before
        self.repository = Repository(url="/fake", password_file=password_file)
        self.url = "/fake"

    def with_password_file(self, path):
        return FakeRestic(self.repo, self.files, path, self.crash_before)

    def _crash(self, method):
        if self.crash_before == method:
            raise Interrupted(method)

    def own_key(self) -> Key:
        if not self.repo.exists:
            raise ResticError("no-repository", self.url, "key list", "config file does not exist")
        password = self.files[self.repository.password_file]
        match = [i for i, p in self.repo.keys.items() if p == password]
        if not match:
            raise ResticError("wrong-password", self.url, "key list", "wrong password or no key")
        return Key(match[0], True)

    def add_key(self, new_password_file):
        self._crash("add_key")
        self.own_key()
        self.repo.add(self.files[new_password_file])

    def remove_key(self, key_id):
        self._crash("remove_key")
        if key_id == self.own_key().id:
            raise ResticError("failed", self.url, "key remove", "refusing to remove key")
        self.repo.remove(key_id)


def _rotation(*passwords, crash_before=None):
    repo = FakeRepository(*passwords)
    return repo, FakeRestic(repo, {CURRENT: NEW, PREVIOUS: OLD}, crash_before=crash_before)


def test_a_rotation_adds_the_new_key_then_removes_the_old_one():
    repo, restic = _rotation(OLD)
    steps = []
    assert rekey(restic, PREVIOUS, after=steps.append) == "rotated"
    assert steps == ["added", "verified", "removed"]
    assert list(repo.keys.values()) == [NEW]


@pytest.mark.parametrize("step", ["added", "verified"])
def test_stopped_after_a_step_a_later_call_finishes(step):
    repo, restic = _rotation(OLD)

    def stop(done):
        if done == step:
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        rekey(restic, PREVIOUS, after=stop)
    assert repo.opens(OLD) and repo.opens(NEW), f"after {step}: both keys must be there"
    assert rekey(restic, PREVIOUS) == "removed-previous"
    assert list(repo.keys.values()) == [NEW]


@pytest.mark.parametrize("method", ["add_key", "remove_key"])
def test_killed_before_a_change_a_later_call_finishes(method):
    repo, restic = _rotation(OLD, crash_before=method)
    with pytest.raises(Interrupted):
        rekey(restic, PREVIOUS)
    repo.check()
    restic.crash_before = None
    assert rekey(restic, PREVIOUS) in ("rotated", "removed-previous")
    assert list(repo.keys.values()) == [NEW]


def test_a_finished_rotation_is_left_alone():
    repo, restic = _rotation(NEW)
    assert rekey(restic, PREVIOUS) == "current"
    assert rekey(restic, None) == "no-previous"
    assert list(repo.keys.values()) == [NEW]


def test_neither_password_opening_is_reported_and_changes_nothing():
    repo, restic = _rotation("someone else's")
    with pytest.raises(NeitherOpens, match="raised twice"):
        rekey(restic, PREVIOUS)
    assert list(repo.keys.values()) == ["someone else's"]


def test_no_repository_yet_is_left_to_init():
    repo, restic = _rotation()
    repo.exists = False
    assert rekey(restic, PREVIOUS) == "no-repository"


def _plan(tmp_path) -> BackupPlan:
    password = tmp_path / "password"
    password.write_text("x\n")
    repository = Repository(
        url=str(tmp_path / "repo"),
        password_file=str(password),
        previous_password_file=str(password),
    )
    return BackupPlan.model_validate(
        {
            "stack": "dev",
            "host_tag": "napdms-dev",
            "repository": repository.model_dump(),
            "offsite": {
                "endpoint": "http://127.0.0.1:9",
                "bucket": "napdms-offsite",
                "repository": {**repository.model_dump(), "url": "s3:http://127.0.0.1:9/b/p"},
            },
            "sources": [{"hook": "files", "service": "gitea", "paths": [str(tmp_path)]}],
            "state_dir": str(tmp_path / "state"),
            "cache_dir": str(tmp_path / "cache"),
        }
    )


def test_rekey_plan_never_raises_and_covers_the_offsite_copy(tmp_path, caplog):
    done = rekey_plan(_plan(tmp_path), binary=str(tmp_path / "no-restic-here"))
    assert [(d.repository, d.outcome) for d in done] == [
        (str(tmp_path / "repo"), "failed"),
        ("s3:http://127.0.0.1:9/b/p", "failed"),
    ]
    assert "rekey" in caplog.text


def test_the_agent_rekeys_when_it_starts_before_its_first_run(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(agent, "rekey_plan", lambda plan: calls.append("rekey"))
    monkeypatch.setattr(agent, "run_backup", lambda plan: calls.append("run"))
    now = [dt.datetime(2026, 11, 23, 0, 30, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()]

    def sleep(seconds):
        now[0] += seconds

    agent.loop(_plan(tmp_path), clock=lambda: now[0], sleep=sleep, runs=2)
    assert calls == ["rekey", "run", "rekey", "run"]


def test_key_commands_take_passwords_from_files_only(tmp_path, monkeypatch):
    current, previous = tmp_path / "current", tmp_path / "previous"
    current.write_text("current-secret\n")
    previous.write_text("previous-secret\n")
    calls = []

    def run(argv, **kwargs):
        calls.append((argv, kwargs["env"]))
        return subprocess.CompletedProcess(argv, 0, b'[{"current": true, "id": "k1"}]', b"")

    monkeypatch.setattr(subprocess, "run", run)
    restic = Restic(Repository(url=str(tmp_path / "repo"), password_file=str(current)))
    old = restic.with_password_file(str(previous))
    assert old.own_key() == Key("k1", True)
    old.add_key(str(current))
    restic.remove_key("k0")
    assert [argv[1:] for argv, _ in calls] == [
        ["key", "list", "--json"],
        ["key", "add", "--new-password-file", str(current)],
        ["key", "remove", "k0"],
    ]
    assert [env["RESTIC_PASSWORD_FILE"] for _, env in calls] == [
        str(previous),
        str(previous),
        str(current),
    ]
    said = repr(calls)
    assert "current-secret" not in said and "previous-secret" not in said


# The program's side: both files reach the agent, and a rotation keeps the previous value.

AGENT = "backup-agent"


def _agent_files(program) -> dict[str, str]:
    init = next(
        c
        for c in program.containers()
        if labels_of(c).get("napdms.role") == "init" and labels_of(c)["napdms.service"] == AGENT
    )
    assert is_secret(init.inputs["uploads"]), "the agent's secret files are stored in plain text"
    return {u["file"]: u["content"] for u in init.plain("uploads")}


def _restic_slots(program) -> dict[str, dict]:
    return {
        p.name: p.plain("keepers")
        for p in program.of_type("random:index/randomPassword:RandomPassword")
        if p.name.startswith("restic-password-")
    }


def test_the_agent_gets_the_current_and_the_previous_password_and_jobs_the_current(program):
    files = _agent_files(program)
    assert {CURRENT, PREVIOUS} <= set(files), f"{program.stack}-backup-agent lacks a password file"
    assert files[CURRENT] != files[PREVIOUS]
    plan = BackupPlan.model_validate_json(files[PLAN_FILE])
    assert (plan.repository.password_file, plan.repository.previous_password_file) == (
        CURRENT,
        PREVIOUS,
    ), "jobs (restore, drill) must open the repository with the current password"


def test_rotating_keeps_the_previous_value_and_replaces_only_one_slot():
    runs = []
    for counter in range(4):
        config = copy.deepcopy(stack_config("dev"))
        config["secrets"] = {"rotation": {"restic-password": counter}}
        runs.append(run_program("dev", config))
    for before, after in itertools.pairwise(runs):
        old, new = _agent_files(before), _agent_files(after)
        assert new[PREVIOUS] == old[CURRENT], "the previous password is not the one before"
        assert new[CURRENT] != old[CURRENT]
        # Pulumi keeps a RandomPassword whose keepers did not change: the slot that now holds
        # the previous value is the one that held the current value, untouched.
        slots_before, slots_after = _restic_slots(before), _restic_slots(after)
        kept = next(name for name in slots_after if mock_password(name) == new[PREVIOUS])
        assert slots_after[kept] == slots_before[kept], f"{kept} would be replaced"
        replaced = next(name for name in slots_after if mock_password(name) == new[CURRENT])
        assert slots_after[replaced] != slots_before[replaced], f"{replaced} would be kept"
    assert _restic_slots(runs[0]) == {
        "restic-password-value": {"rotation": "0"},
        "restic-password-value-odd": {"rotation": "0"},
    }, "an unrotated stack's restic-password must keep its resource and keepers"


def test_the_previous_value_is_not_a_secret_of_its_own():
    config = {**stack_config("dev"), "secrets": {"rotation": {"restic-password-previous": 1}}}
    with pytest.raises(Exception, match="no service reads a secret of that name"):
        run_program("dev", config)
