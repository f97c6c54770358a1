"""The second copy of a stack's trail, out of the operator's quiet reach: the stack's backup host
(the ASUSTOR) over SSH, written only by appending; a local directory in dev or when
`$NAPDMS_AUDIT_MIRROR` names one."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

REMOTE_DIR = "~/napdms-audit"
"""Where the trails live on the backup host, in the SSH user's home."""
SSH_TIMEOUT_S = 30.0


class MirrorError(Exception):
    """The mirror cannot be read or written; the message says why."""


class Mirror(Protocol):
    """An append-only copy of one stack's trail."""

    where: str
    """Where it is, for messages."""

    def read(self) -> bytes:
        """Every line the mirror holds (b"" when it holds none)."""

    def last_line(self) -> bytes:
        """Its last line without the newline (b"" when it holds none)."""

    def append(self, data: bytes) -> None:
        """Add whole lines at the end."""


class LocalMirror:
    """`<directory>/<stack>.jsonl` on this machine."""

    def __init__(self, directory: Path, stack: str):
        self.path = directory / f"{stack}.jsonl"
        self.where = str(self.path)

    def read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as error:
            raise MirrorError(f"cannot read {self.path}: {error.strerror or error}") from None

    def last_line(self) -> bytes:
        lines = self.read().splitlines()
        return lines[-1] if lines else b""

    def append(self, data: bytes) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, data)
            finally:
                os.close(descriptor)
        except OSError as error:
            raise MirrorError(f"cannot append to {self.path}: {error.strerror or error}") from None


Runner = Callable[..., subprocess.CompletedProcess]


class SshMirror:
    """`~/napdms-audit/<stack>.jsonl` on an SSH host, read with cat/tail and written only with
    `cat >>`: nothing this program sends there edits or removes a line."""

    def __init__(
        self,
        target: str,
        stack: str,
        options: Sequence[str] = (),
        run: Runner = subprocess.run,
    ):
        self.target = target
        self.options = list(options)
        self.file = f"{REMOTE_DIR}/{shlex.quote(stack + '.jsonl')}"
        self.where = f"{target}:{REMOTE_DIR}/{stack}.jsonl"
        self._run = run

    def argv(self, remote: str) -> list[str]:
        """The ssh call that runs `remote` on the host; never a password prompt."""
        return [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            *self.options,
            self.target,
            remote,
        ]

    def _call(self, remote: str, data: bytes = b"") -> bytes:
        try:
            done = self._run(
                self.argv(remote), input=data, capture_output=True, timeout=SSH_TIMEOUT_S
            )
        except (OSError, subprocess.SubprocessError) as error:
            raise MirrorError(f"ssh {self.target}: {error}") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip().splitlines()
            raise MirrorError(
                f"ssh {self.target} exited {done.returncode}: {said[-1] if said else 'no message'}"
            )
        return done.stdout

    def read(self) -> bytes:
        return self._call(f"test ! -e {self.file} || cat {self.file}")

    def last_line(self) -> bytes:
        return self._call(f"test ! -e {self.file} || tail -n 1 {self.file}").rstrip(b"\n")

    def append(self, data: bytes) -> None:
        self._call(f"mkdir -p {REMOTE_DIR} && cat >> {self.file}", data)


class UnusableMirror:
    """A mirror that could not be found (a stack file that does not read, say): every use fails
    with why, so each append says so and the local record still lands."""

    def __init__(self, where: str, why: str):
        self.where = where
        self.why = why

    def read(self) -> bytes:
        raise MirrorError(self.why)

    def last_line(self) -> bytes:
        raise MirrorError(self.why)

    def append(self, data: bytes) -> None:
        raise MirrorError(self.why)


def ssh_mirror(endpoint: str, stack: str, options: Sequence[str] = ()) -> SshMirror:
    """The mirror at `ssh://[user@]host[:port]`."""
    parts = urlsplit(endpoint)
    port = ["-p", str(parts.port)] if parts.port else []
    user = f"{parts.username}@" if parts.username else ""
    return SshMirror(f"{user}{parts.hostname}", stack, [*options, *port])


def named_mirror(value: str, stack: str) -> Mirror:
    """`--mirror` / `$NAPDMS_AUDIT_MIRROR`: an `ssh://` endpoint, else a local directory."""
    if value.startswith("ssh://"):
        return ssh_mirror(value, stack)
    return LocalMirror(Path(value).expanduser(), stack)


def mirror_for(stack: str, state: Path, environ: Mapping[str, str] = os.environ) -> Mirror:
    """`$NAPDMS_AUDIT_MIRROR` when set; else the stack's backup host when it is reached over SSH
    (prod, staging: the ASUSTOR); else (dev, one local daemon) `<state>/audit-mirror`."""
    from components.settings import SettingsError, read_stack

    configured = environ.get("NAPDMS_AUDIT_MIRROR")
    if configured:
        return named_mirror(configured, stack)
    try:
        settings = read_stack(stack).settings
    except SettingsError as error:
        return UnusableMirror(
            f"the backup host of {stack}",
            f"{'; '.join(error.lines)} (or set NAPDMS_AUDIT_MIRROR to a directory or ssh://host)",
        )
    host = settings.hosts[settings.host_for_role("backup")]
    if host.docker_host and host.docker_host.startswith("ssh://"):
        return ssh_mirror(host.docker_host, stack, host.ssh_opts)
    return LocalMirror(state / "audit-mirror", stack)
