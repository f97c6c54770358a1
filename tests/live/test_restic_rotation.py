"""Rotating `restic-password` with the real restic binary on a local repository: the rekey steps
(`napdms_ops.backup.rekey`) killed after `key add` and run again, and in one go, with both
passwords probed at every step. About 40 s: each restic call derives a key (scrypt)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components.model.plan import Repository
from napdms_ops.backup.rekey import rekey
from napdms_ops.backup.restic import Restic, ResticError

ROOT = Path(__file__).resolve().parents[2]
RESTIC = shutil.which("restic") or "/usr/bin/restic"

pytestmark = pytest.mark.skipif(not Path(RESTIC).exists(), reason="restic is not installed")


class Site:
    """A repository initialised with password A, the agent's files after a rotation to B."""

    def __init__(self, tmp_path: Path):
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        self.a, self.b = secrets / "a", secrets / "b"
        self.a.write_text("password A, from before the rotation\n")
        self.b.write_text("password B, the rotated one\n")
        self.current = secrets / "restic-password"
        self.previous = secrets / "restic-password-previous"
        self.cache = str(tmp_path / "cache")
        self.url = str(tmp_path / "repository")
        self.data = tmp_path / "data.txt"
        self.data.write_text("documents\n" * 1000)
        initial = self.opened_with(self.a)
        initial.init()
        self.snapshot = initial.backup_paths([str(self.data)], "napdms-dev", ["t"]).snapshot_id
        # `pulumi up` after raising secrets.rotation.restic-password: the init container writes
        # the new value and the one before it.
        shutil.copy(self.b, self.current)
        shutil.copy(self.a, self.previous)

    def opened_with(self, password: Path) -> Restic:
        return Restic(Repository(url=self.url, password_file=str(password)), self.cache, RESTIC)

    def agent(self) -> Restic:
        return self.opened_with(self.current)

    def opens(self, password: Path) -> bool:
        try:
            self.opened_with(password).run("cat", "config", action="open")
        except ResticError as error:
            assert error.kind == "wrong-password", error
            return False
        return True

    def state(self) -> tuple[bool, bool]:
        """(A opens, B opens)."""
        return self.opens(self.a), self.opens(self.b)

    def key_count(self) -> int:
        return len(self.agent().keys())

    def data_intact(self) -> bool:
        dumped = self.agent().dump(self.snapshot, str(self.data))
        return dumped == self.data.read_bytes()


@pytest.fixture
def site(tmp_path) -> Site:
    return Site(tmp_path)


def test_killed_after_key_add_the_next_start_finishes_the_rotation(site):
    assert site.state() == (True, False)
    # The agent is killed (SIGKILL) the moment `restic key add` has returned.
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import os, signal
                from components.model.plan import Repository
                from napdms_ops.backup.rekey import rekey
                from napdms_ops.backup.restic import Restic
                restic = Restic(Repository(url={site.url!r}, password_file={str(site.current)!r}),
                                {site.cache!r}, {RESTIC!r})
                def after(step):
                    if step == "added":
                        os.kill(os.getpid(), signal.SIGKILL)
                rekey(restic, {str(site.previous)!r}, after=after)
            """),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert site.state() == (True, True), "after key add both passwords must open the repository"

    steps: list[tuple[str, tuple[bool, bool]]] = []
    outcome = rekey(
        site.agent(), str(site.previous), after=lambda step: steps.append((step, site.state()))
    )
    assert outcome == "removed-previous"
    assert steps == [("removed", (False, True))]
    assert site.key_count() == 1
    assert site.data_intact(), "the snapshot made under A does not read back under B"
    assert rekey(site.agent(), str(site.previous)) == "current", "a further start changes nothing"


def test_an_uninterrupted_rotation_keeps_one_password_opening_at_every_step(site):
    steps: list[tuple[str, tuple[bool, bool]]] = []
    outcome = rekey(
        site.agent(), str(site.previous), after=lambda step: steps.append((step, site.state()))
    )
    assert outcome == "rotated"
    assert steps == [
        ("added", (True, True)),
        ("verified", (True, True)),
        ("removed", (False, True)),
    ]
    assert site.key_count() == 1
    assert site.data_intact()
