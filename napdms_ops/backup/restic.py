"""restic, driven as a subprocess.

The engine does the archiving, we add errors that say what to fix.

Every call goes through `Restic.run`, which sets the repository, password file, cache and backend
options, and turns restic's failures into `ResticError` with a `kind` the orchestrator can act on
(retry a cut link, stop on a wrong key, raise the disk-full alert).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from components.model.plan import Repository

ErrorKind = Literal[
    "missing-password",
    "wrong-password",
    "no-repository",
    "disk-full",
    "network",
    "locked",
    "failed",
]

FULL_BELOW_BYTES = 64 * 1024 * 1024
"""Less free space than this (a few of restic's pack files) after a failed write means a full
disk."""

RETRYABLE: frozenset[str] = frozenset({"network", "locked", "failed"})
"""Kinds a later attempt may cure. A wrong key, a missing repository or a full disk will not."""

_PATTERNS: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = (
    ("wrong-password", re.compile(r"wrong password or no key found", re.I)),
    (
        "no-repository",
        re.compile(
            r"Is there a repository at the following location|config file does not exist", re.I
        ),
    ),
    (
        "disk-full",
        re.compile(r"no space left on device|quota exceeded|SSH_FX_FAILURE.*(?:space|full)", re.I),
    ),
    ("locked", re.compile(r"repository is already locked", re.I)),
    (
        "network",
        re.compile(
            r"connection (?:lost|reset|refused|closed|timed out)|broken pipe|no route to host|"
            r"network is unreachable|ssh command exited|unable to start the sftp session|"
            r"i/o timeout|\bEOF\b|Timeout|TLS handshake|dial tcp|ssh: connect to host",
            re.I,
        ),
    ),
)

_FIXES: dict[str, str] = {
    "missing-password": (
        "the agent reads it from the restic-password secret; "
        "run `pulumi up` for the stack so the file is written"
    ),
    "wrong-password": (
        "the restic-password secret does not open this repository; "
        "restore the secret it was initialised with; after a rotation of restic-password the "
        "agent adds the new key when it starts (a `rekey` line in its log), so read that first"
    ),
    "no-repository": (
        "initialise it once with `python3 -m napdms_ops backup init --stack <stack>`, "
        "or fix backup.repository if the path is wrong"
    ),
    "disk-full": (
        "free space on the backup target (run `backup prune`, or grow the volume) "
        "and rerun `backup run`"
    ),
    "network": (
        "check the link and ssh access from the QNAP to the backup host; "
        "the run is retried on schedule"
    ),
    "locked": "another restic process holds an exclusive lock; `restic unlock` removes stale locks",
    "failed": "read restic's message above",
}


class ResticError(RuntimeError):
    """restic failed; `kind` classifies why, the message says what to do."""

    def __init__(self, kind: ErrorKind, repository: str, action: str, detail: str):
        self.kind = kind
        self.repository = repository
        self.action = action
        self.detail = detail.strip()
        lines = self.detail.splitlines() or ["no output"]
        # restic ends with a count ("There were 2 errors"); the lines that name them say more.
        named = [line for line in lines[:-1] if "error" in line.lower()][:3]
        said = "; ".join([*named, lines[-1]])
        super().__init__(f"restic {action} on {repository}: {kind}: {said}. Fix: {_FIXES[kind]}")

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed."""
        return self.kind in RETRYABLE


class CommandFailed(RuntimeError):
    """A dump command failed; its half-written snapshot has been forgotten."""

    def __init__(self, command: str, message: str):
        self.command = command
        super().__init__(message)


def classify(stderr: str) -> ErrorKind:
    """The kind of a restic failure, read from its error output."""
    for kind, pattern in _PATTERNS:
        if pattern.search(stderr):
            return kind
    return "failed"


@dataclass(frozen=True)
class Snapshot:
    """One restic snapshot as `restic snapshots --json` lists it."""

    id: str
    time: str
    paths: tuple[str, ...]
    tags: tuple[str, ...]
    hostname: str
    original: str | None = None
    """For a snapshot `restic copy` made: the id it had in the repository it came from."""

    def is_(self, snapshot_id: str) -> bool:
        """Whether `snapshot_id` (full or short) names this snapshot, here or where it was copied
        from."""
        return self.id.startswith(snapshot_id) or bool(
            self.original and self.original.startswith(snapshot_id)
        )

    def tag(self, key: str) -> str | None:
        """The value of a `key=value` tag, or None."""
        prefix = f"{key}="
        return next((t[len(prefix) :] for t in self.tags if t.startswith(prefix)), None)


@dataclass(frozen=True)
class Key:
    """One key of the repository as `restic key list --json` lists it."""

    id: str
    current: bool
    """Whether this key is the one the listing's password opened."""


@dataclass(frozen=True)
class BackupSummary:
    """restic's closing `summary` message of a `backup --json` run."""

    snapshot_id: str
    files: int
    bytes_processed: int
    bytes_added: int
    seconds: float


class Restic:
    """A restic repository as the plan describes it."""

    def __init__(
        self, repository: Repository, cache_dir: str | None = None, binary: str = "restic"
    ):
        self.repository = repository
        self.cache_dir = cache_dir
        self.binary = binary

    @property
    def url(self) -> str:
        """The repository location (never a secret: passwords live in files)."""
        return self.repository.url

    def environment(self) -> dict[str, str]:
        """restic's environment: repository, password file, cache and S3 keys (read from files)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RESTIC_", "AWS_"))
        }
        env["RESTIC_REPOSITORY"] = self.repository.url
        env["RESTIC_PASSWORD_FILE"] = self.repository.password_file
        if self.cache_dir:
            env["RESTIC_CACHE_DIR"] = self.cache_dir
        if self.repository.s3_access_key_file and self.repository.s3_secret_key_file:
            env["AWS_ACCESS_KEY_ID"] = _read_key(self.repository.s3_access_key_file)
            env["AWS_SECRET_ACCESS_KEY"] = _read_key(self.repository.s3_secret_key_file)
        return env

    def _ssh_options(self) -> list[str]:
        sftp = self.repository.sftp
        return [
            "-i",
            sftp.key_file,
            "-o",
            f"UserKnownHostsFile={sftp.known_hosts_file}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"ServerAliveInterval={sftp.alive_interval_s}",
            "-o",
            f"ServerAliveCountMax={sftp.alive_count_max}",
            "-o",
            f"ConnectTimeout={sftp.connect_timeout_s}",
        ]

    def _sftp_target(self) -> tuple[str, str]:
        """(user@host, path) of an sftp repository."""
        target, _, path = self.repository.url.removeprefix("sftp:").partition(":")
        return target, path

    def options(self) -> list[str]:
        """Backend options: for sftp, an ssh command that never prompts and gives up on a dead
        link."""
        if not self.repository.url.startswith("sftp:") or self.repository.sftp is None:
            return []
        target, _ = self._sftp_target()
        ssh = [
            "ssh",
            *self._ssh_options(),
            "-p",
            str(self.repository.sftp.port),
            target,
            "-s",
            "sftp",
        ]
        return ["-o", f"sftp.command={shlex.join(ssh)}"]

    def free_bytes(self) -> int | None:
        """Free space where the repository lives (local path or sftp), None if it cannot be told."""
        if self.repository.url.startswith("/"):
            path = Path(self.repository.url)
            while not path.exists():
                path = path.parent
            stat = os.statvfs(path)
            return stat.f_bavail * stat.f_frsize
        if not self.repository.url.startswith("sftp:") or self.repository.sftp is None:
            return None
        target, path = self._sftp_target()
        # sftp's `df` asks the server's statvfs extension; it needs no shell on the ASUSTOR.
        done = subprocess.run(
            [
                "sftp",
                "-q",
                "-b",
                "-",
                *self._ssh_options(),
                "-P",
                str(self.repository.sftp.port),
                target,
            ],
            input=f"df {path or '.'}\n".encode(),
            capture_output=True,
            timeout=60,
        )
        lines = done.stdout.decode(errors="replace").splitlines()
        header = next((i for i, line in enumerate(lines) if "Avail" in line), None)
        if done.returncode != 0 or header is None or header + 1 >= len(lines):
            return None
        return int(lines[header + 1].split()[2]) * 1024

    def _error(self, action: str, detail: str) -> ResticError:
        """Classify a failure; a generic sftp write failure on a full target is a full disk."""
        kind = classify(detail)
        if kind == "failed" and "SSH_FX_FAILURE" in detail:
            try:
                free = self.free_bytes()
            except (OSError, subprocess.SubprocessError):
                free = None
            if free is not None and free < FULL_BELOW_BYTES:
                kind = "disk-full"
                detail += f"\n{self.url}: only {free // 1024} KiB free"
        return ResticError(kind, self.url, action, detail)

    def check_password_file(self) -> None:
        """Fail before touching anything when the key file is absent or empty."""
        path = Path(self.repository.password_file)
        try:
            present = path.read_text().strip() != ""
        except OSError as error:
            raise ResticError(
                "missing-password", self.url, "open", f"password file {path}: {error.strerror}"
            ) from None
        if not present:
            raise ResticError(
                "missing-password", self.url, "open", f"password file {path} is empty"
            )

    def argv(self, *args: str) -> list[str]:
        """The full command line of a restic call."""
        return [self.binary, *self.options(), *args]

    def call(
        self,
        *args: str,
        action: str | None = None,
        data: bytes | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Run restic; return its stdout as bytes, raise `ResticError` on failure."""
        action = action or args[0]
        try:
            done = subprocess.run(
                self.argv(*args),
                input=data,
                capture_output=True,
                env=self.environment(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as expired:
            raise ResticError(
                "network",
                self.url,
                action,
                f"no answer within {timeout:.0f} s: {expired.stderr or b''!r}",
            ) from None
        if done.returncode != 0:
            raise self._error(action, done.stderr.decode(errors="replace"))
        return done.stdout

    def run(
        self,
        *args: str,
        action: str | None = None,
        data: bytes | None = None,
        timeout: float | None = None,
    ) -> str:
        """`call`, with stdout as text."""
        return self.call(*args, action=action, data=data, timeout=timeout).decode(errors="replace")

    def run_unlocking(self, *args: str, action: str | None = None) -> str:
        """`run`, and if a lock is in the way, remove stale locks (those of dead processes, or
        left by a run whose link was cut) and try once more."""
        try:
            return self.run(*args, action=action)
        except ResticError as error:
            if error.kind != "locked":
                raise
            self.run("unlock", action="unlock")
            return self.run(*args, action=action)

    def with_password_file(self, password_file: str) -> Restic:
        """The same repository opened with another password file."""
        return Restic(
            self.repository.model_copy(update={"password_file": password_file}),
            self.cache_dir,
            self.binary,
        )

    def keys(self) -> list[Key]:
        """The repository's keys; the `current` one is ours (raises on a wrong password)."""
        self.check_password_file()
        listed = json.loads(self.run("key", "list", "--json", action="key list") or "[]") or []
        return [Key(str(k["id"]), bool(k.get("current"))) for k in listed]

    def own_key(self) -> Key:
        """The key our password opens."""
        return next(k for k in self.keys() if k.current)

    def add_key(self, new_password_file: str) -> None:
        """Add the password in `new_password_file` as another key (ours opens the repository);
        the new password is read from its file, never passed on the command line."""
        self.run("key", "add", "--new-password-file", new_password_file, action="key add")

    def remove_key(self, key_id: str) -> None:
        """Remove another key (restic refuses to remove the one that opened it)."""
        self.run_unlocking("key", "remove", key_id, action="key remove")

    def exists(self) -> bool:
        """Whether a repository is there and opens with our key (raises on a wrong key)."""
        self.check_password_file()
        try:
            self.run("cat", "config", action="open")
        except ResticError as error:
            if error.kind == "no-repository":
                return False
            raise
        return True

    def init(self, copy_chunker_from: Restic | None = None) -> None:
        """Create the repository; with `copy_chunker_from`, chunk like it so `copy` deduplicates."""
        self.check_password_file()
        args = ["init"]
        if copy_chunker_from is not None:
            args += [
                "--copy-chunker-params",
                "--from-repo",
                copy_chunker_from.url,
                "--from-password-file",
                copy_chunker_from.repository.password_file,
            ]
            args = [*copy_chunker_from.options(), *args]
        self.run(*args, action="init")

    def backup_paths(self, paths: Sequence[str], host: str, tags: Sequence[str]) -> BackupSummary:
        """Back up directories; returns restic's summary."""
        return _summary(
            self.run("backup", "--json", "--host", host, *_tag_args(tags), *paths, action="backup")
        )

    def backup_bytes(
        self, data: bytes, filename: str, host: str, tags: Sequence[str]
    ) -> BackupSummary:
        """Back up `data` as one file named `filename` in the snapshot."""
        return _summary(self.run(*_stdin_backup(filename, host, tags), data=data, action="backup"))

    def backup_command(
        self,
        command: Sequence[str],
        env: dict[str, str],
        filename: str,
        host: str,
        tags: Sequence[str],
    ) -> BackupSummary:
        """Back up what `command` writes to stdout as one file.

        Like restic's `--stdin-from-command`.

        A snapshot of a command that failed would look complete but hold a truncated dump, so it
        is forgotten again and `CommandFailed` raised; a failure of restic itself wins, because a
        dump tool dies of a broken pipe when restic goes away.
        """
        with tempfile.TemporaryFile() as errors:
            try:
                producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, env=env)
            except OSError as error:
                raise CommandFailed(
                    command[0], f"cannot start {command[0]}: {error.strerror}"
                ) from None
            try:
                archiver = subprocess.Popen(
                    self.argv(*_stdin_backup(filename, host, tags)),
                    stdin=producer.stdout,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self.environment(),
                )
            finally:
                # Only restic may hold the read end, so the producer sees EPIPE if restic dies.
                producer.stdout.close()
            out, err = archiver.communicate()
            produced = producer.wait()
            if archiver.returncode != 0:
                raise self._error("backup", err.decode(errors="replace"))
            summary = _summary(out.decode(errors="replace"))
            if produced != 0:
                self.forget(summary.snapshot_id)
                errors.seek(0)
                message = errors.read().decode(errors="replace").strip().splitlines()
                raise CommandFailed(
                    command[0],
                    f"{command[0]} exited {produced}: {message[-1] if message else 'no output'}",
                )
            return summary

    def snapshots(self, host: str | None = None, tags: Sequence[str] = ()) -> list[Snapshot]:
        """Snapshots, oldest first, optionally only of `host` and with all of `tags`."""
        args = ["snapshots", "--json"]
        if host:
            args += ["--host", host]
        if tags:
            args += ["--tag", ",".join(tags)]
        listed = json.loads(self.run(*args) or "[]") or []
        return [
            Snapshot(
                s["id"],
                s["time"],
                tuple(s.get("paths") or ()),
                tuple(s.get("tags") or ()),
                s.get("hostname", ""),
                s.get("original"),
            )
            for s in listed
        ]

    def dump(self, snapshot_id: str, path: str) -> bytes:
        """The content of one file of a snapshot."""
        return self.call("dump", snapshot_id, path)

    def restore(self, snapshot_id: str, target: str, verify: bool = False) -> None:
        """Extract a snapshot under `target` (its absolute paths are recreated beneath it).

        `snapshot_id` may be the id the snapshot had before `restic copy` brought it here, as the
        manifests record them: the offsite copy restores from the same manifests.
        """
        extra = ["--verify"] if verify else []
        try:
            self.run("restore", snapshot_id, "--target", target, *extra, action="restore")
        except ResticError as error:
            if "no matching ID found" not in error.detail:
                raise
            copied = {s.original: s.id for s in self.snapshots() if s.original}
            here = next((new for old, new in copied.items() if old.startswith(snapshot_id)), None)
            if here is None:
                raise
            self.run("restore", here, "--target", target, *extra, action="restore")

    def forget(self, *snapshot_ids: str) -> None:
        """Drop snapshots (their data stays until the next prune)."""
        if snapshot_ids:
            self.run("forget", *snapshot_ids, action="forget")


def moment_of(restic_time: str) -> float:
    """Unix time of a time as restic prints it (a snapshot's `time`)."""
    # restic prints nanoseconds, which fromisoformat does not take; seconds are precise enough.
    return dt.datetime.fromisoformat(
        re.sub(r"\.\d+", "", restic_time).replace("Z", "+00:00")
    ).timestamp()


def _tag_args(tags: Sequence[str]) -> list[str]:
    return [arg for tag in tags for arg in ("--tag", tag)]


def _stdin_backup(filename: str, host: str, tags: Sequence[str]) -> list[str]:
    """restic arguments that back up stdin as one file named `filename`."""
    return [
        "backup",
        "--json",
        "--stdin",
        "--stdin-filename",
        filename,
        "--host",
        host,
        *_tag_args(tags),
    ]


def _summary(output: str) -> BackupSummary:
    for line in reversed(output.splitlines()):
        if '"summary"' in line:
            data = json.loads(line)
            return BackupSummary(
                snapshot_id=data["snapshot_id"],
                files=int(data.get("total_files_processed", 0)),
                bytes_processed=int(data.get("total_bytes_processed", 0)),
                bytes_added=int(data.get("data_added", 0)),
                seconds=float(data.get("total_duration", 0.0)),
            )
    raise ResticError("failed", "", "backup", f"restic printed no summary: {output[-300:]}")


def _read_key(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as error:
        raise ResticError(
            "missing-password", path, "open", f"S3 key file {path}: {error.strerror}"
        ) from None
