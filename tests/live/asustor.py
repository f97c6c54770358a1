"""The ASUSTOR NAS of the live tests: a network namespace behind a veth pair, running a real sshd.

    with Asustor() as asustor:
        url = asustor.repo_url("repo")        # sftp:root@10.251.N.2:<data_dir>/repo
        ... restic -o asustor.sftp_option() -r url init ...
        asustor.cut(); asustor.restore()      # the link between QNAP and ASUSTOR fails, comes back
        asustor.cut_for(5, after=2)           # the same in a background thread, bounded
        target = asustor.small_disk(16)       # a 16 MiB tmpfs under data_dir: the disk-full case

The host plays the QNAP. It reaches the namespace directly over the veth pair (10.251.N.1/30 on
the host side, 10.251.N.2/30 inside); containers on any non-internal Docker bridge network reach
it too, because the host forwards their traffic to the veth and Docker masquerades it to
10.251.N.1 (Docker's FORWARD rules accept what leaves a bridge for another interface, and the
replies as RELATED/ESTABLISHED), so no extra firewall rule is needed.

sshd and the other servers run in the namespace's *network* namespace only (`nsenter --net`),
not under `ip netns exec`: they share the host's mount namespace, so data_dir and the tmpfs
mounts small_disk() makes later are the same files for the test, for sshd and for restic.

Every instance has its own namespace, subnet, veth pair and temporary directory, named after the
creating process; creating one first removes what earlier crashed processes left behind (their
pid is gone), so reruns and parallel runs never collide.  Needs root, iproute2, util-linux and
openssh-server/openssh-client.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

PREFIX = "napdms-asu"
"""Prefix of every namespace (napdms-asu<N>-<pid>-<random>) and temporary directory."""
SUBNET = "10.251"
"""Instance N uses 10.251.N.0/30."""
LOCK_PATH = "/tmp/napdms-asustor.lock"
"""Serialises subnet allocation and leftover cleanup across processes."""
SSHD = "/usr/sbin/sshd"
SSH_PORT = 22
USER = "root"
START_TIMEOUT_S = 10.0
FALLBACK_METRIC = 4000
"""Metric of the per-instance `unreachable` route that takes over while the link is cut."""
MAX_CUT_S = 600.0
CONTAINER_KEY_FILE = "/run/secrets/asustor-ssh-key"
"""Where containers get a read-only copy of key_file (conftest's run_agent mounts it there)."""
CONTAINER_KNOWN_HOSTS_FILE = "/run/secrets/asustor-known-hosts"
"""Where containers get a read-only copy of known_hosts_file."""

_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-(\d+)-[0-9a-f]+$")


def _run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}"
        )
    return done


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _veth_names(index: int) -> tuple[str, str]:
    """(host side, namespace side); interface names are at most 15 characters."""
    return f"nasu{index}h", f"nasu{index}n"


def _mounts_below(prefix: str) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        targets = [line.split()[1].replace("\\040", " ") for line in mounts]
    return sorted((t for t in targets if t == prefix or t.startswith(prefix + "/")), reverse=True)


def _kill_netns_processes(netns: str) -> None:
    pids = _run("ip", "netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _running(p)]
        time.sleep(0.02)


def _running(pid: str) -> bool:
    """Whether pid still runs; a zombie (killed, not yet reaped by its new parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _remove_instance(netns: str, index: int, workdir: str | None) -> None:
    """Delete everything an instance may have made; each step tolerates it being gone already."""
    _kill_netns_processes(netns)
    _run("ip", "netns", "delete", netns, check=False)
    host_veth, _ = _veth_names(index)
    # Gone with the namespace normally; still there if the namespace lived on (a stray process).
    _run("ip", "link", "delete", host_veth, check=False)
    _run(
        "ip",
        "route",
        "delete",
        "unreachable",
        f"{SUBNET}.{index}.0/30",
        "metric",
        str(FALLBACK_METRIC),
        check=False,
    )
    if workdir:
        for target in _mounts_below(os.path.realpath(workdir)):
            _run("umount", "-l", target, check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def _clean_leftovers() -> None:
    """Remove namespaces, routes and directories of instances whose process has died."""
    existing = _run("ip", "netns", "list", check=False).stdout.split("\n")
    names = {line.split()[0] for line in existing if line.strip()}
    workdirs = {
        p.name: str(p) for p in Path(tempfile.gettempdir()).glob(PREFIX + "*") if p.is_dir()
    }
    for name in names | set(workdirs):
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(2))):
            _remove_instance(name, int(match.group(1)), workdirs.get(name))


def _used_indexes() -> set[int]:
    """Subnets 10.251.N.0/30 the host already routes or addresses (any instance, live or not)."""
    text = _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
    text += _run("ip", "-4", "-o", "addr", check=False).stdout
    text += _run("ip", "netns", "list", check=False).stdout
    used = {int(n) for n in re.findall(rf"\b{re.escape(SUBNET)}\.(\d+)\.", text)}
    used |= {
        int(m.group(1))
        for m in (_NAME.match(line.split()[0]) for line in text.splitlines() if line.strip())
        if m
    }
    return used


class Asustor:
    """The ASUSTOR: sshd (SFTP) in its own network namespace, a temporary data directory as its
    disk.

    Attributes: name (the namespace), address (its IP), host_address (the host's end of the link),
    data_dir (the backup target, a host directory), key_file / public_key_file (the client key
    sshd accepts for root), known_hosts_file (a known_hosts line for address), user ("root").
    """

    def __init__(self, start_timeout_s: float = START_TIMEOUT_S):
        if os.geteuid() != 0:
            raise RuntimeError("the Asustor namespace needs root (ip netns, veth, mount)")
        for tool in ("ip", "nsenter", "ssh-keygen", "ssh"):
            if (
                shutil.which(tool) is None
                and shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None
            ):
                raise RuntimeError(
                    f"the Asustor namespace needs `{tool}` "
                    "(apt-get install iproute2 util-linux openssh-client)"
                )
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} is missing: apt-get install -y openssh-server")
        self._closed = False
        self._lock = threading.Lock()
        self._cut_threads: list[threading.Thread] = []
        self._stop_cuts = threading.Event()
        self._mounts: list[Path] = []
        self._processes: list[subprocess.Popen] = []
        self.sshd: subprocess.Popen | None = None
        started = time.monotonic()
        with open(LOCK_PATH, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _clean_leftovers()
            used = _used_indexes()
            free = [n for n in range(1, 255) if n not in used]
            if not free:
                raise RuntimeError(f"no free {SUBNET}.N.0/30 subnet for another Asustor namespace")
            self.index = free[0]
            self.name = f"{PREFIX}{self.index}-{os.getpid()}-{secrets.token_hex(3)}"
            # Named exactly like the namespace, so the leftover scan finds both.
            self.workdir = Path(tempfile.gettempdir()) / self.name
            self.workdir.mkdir(mode=0o700)
            atexit.register(self.close)
            try:
                self._make_link()
            except BaseException:
                self.close()
                raise
        try:
            self._make_keys()
            self._start_sshd(start_timeout_s)
        except BaseException:
            self.close()
            raise
        self.setup_seconds = time.monotonic() - started
        """How long creating the namespace, link, keys and sshd took."""

    # ------------------------------------------------------------ set-up

    def _make_link(self) -> None:
        self.host_veth, self.ns_veth = _veth_names(self.index)
        self.host_address = f"{SUBNET}.{self.index}.1"
        self.address = f"{SUBNET}.{self.index}.2"
        self.subnet = f"{SUBNET}.{self.index}.0/30"
        _run("ip", "netns", "add", self.name)
        _run(
            "ip",
            "link",
            "add",
            self.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            self.ns_veth,
            "netns",
            self.name,
        )
        _run("ip", "addr", "add", self.host_address + "/30", "dev", self.host_veth)
        _run("ip", "link", "set", self.host_veth, "up")
        _run("ip", "-n", self.name, "addr", "add", self.address + "/30", "dev", self.ns_veth)
        _run("ip", "-n", self.name, "link", "set", self.ns_veth, "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")
        # While the host side is down the kernel drops the connected route; without this one the
        # host would then send the ASUSTOR's traffic to its default gateway, off this machine.
        # Unreachable instead: new connections fail at once with "No route to host", as on a LAN
        # whose peer has gone, and nothing leaves the machine.
        _run("ip", "route", "replace", "unreachable", self.subnet, "metric", str(FALLBACK_METRIC))

    def _make_keys(self) -> None:
        self.etc = self.workdir / "etc"
        self.data_dir = self.workdir / "data"
        self.etc.mkdir(mode=0o700)
        self.data_dir.mkdir(mode=0o755)
        self.host_key_file = self.etc / "ssh_host_ed25519_key"
        self.key_file = self.etc / "client_ed25519"
        self.public_key_file = self.etc / "client_ed25519.pub"
        self.known_hosts_file = self.etc / "known_hosts"
        self.authorized_keys_file = self.etc / "authorized_keys"
        self.user = USER
        _run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "asustor-host",
            "-f",
            str(self.host_key_file),
        )
        _run(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "napdms-backup@qnap",
            "-f",
            str(self.key_file),
        )
        self.authorized_keys_file.write_text(self.public_key_file.read_text())
        host_public = (self.etc / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts_file.write_text(f"{self.address} {host_public[0]} {host_public[1]}\n")
        # Readable by any uid, so containers running as non-root can use bind-mounted copies;
        # ssh only insists that the *private* key is not readable by others.
        os.chmod(self.etc, 0o755)
        os.chmod(self.known_hosts_file, 0o644)

    def _start_sshd(self, timeout_s: float) -> None:
        config = self.etc / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:{SSH_PORT}",
                    f"HostKey {self.host_key_file}",
                    "PidFile %s" % (self.etc / "sshd.pid"),
                    f"AuthorizedKeysFile {self.authorized_keys_file}",
                    # We are root; a key is the only way in, as for the NAS's backup account.
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "UseDNS no",
                    # The key files live below the world-writable temporary directory.
                    "StrictModes no",
                    "X11Forwarding no",
                    "AllowTcpForwarding no",
                    "PrintMotd no",
                    # Parallel restic connections and repeated test logins must never be throttled.
                    "MaxStartups 100:30:200",
                    "MaxSessions 100",
                    "LogLevel VERBOSE",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        # sshd insists on its privilege separation directory (the package makes it at boot only).
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.sshd_log = self.etc / "sshd.log"
        self.sshd = self.spawn([SSHD, "-D", "-e", "-f", str(config)], log=self.sshd_log)
        self._wait_for_port(SSH_PORT, self.sshd, timeout_s, b"SSH-2.0-")

    def _wait_for_port(
        self, port: int, process: subprocess.Popen, timeout_s: float, banner: bytes = b""
    ) -> None:
        deadline = time.monotonic() + timeout_s
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[3:]} exited with {process.returncode} while starting:\n"
                    f"{self._log_tail(process)}"
                )
            try:
                with socket.create_connection((self.address, port), timeout=1) as sock:
                    if not banner:
                        return
                    sock.settimeout(2)
                    if sock.recv(64).startswith(banner):
                        return
            except OSError as error:
                last_error = error
            time.sleep(0.05)
        raise RuntimeError(
            f"nothing answered on {self.address}:{port} within {timeout_s:.0f} s ({last_error}):\n"
            f"{self._log_tail(process)}"
        )

    def _log_tail(self, process: subprocess.Popen) -> str:
        path = getattr(process, "log_path", None)
        try:
            return Path(path).read_text(errors="replace")[-3000:] if path else ""
        except OSError:
            return ""

    # ------------------------------------------------------------ use

    def spawn(self, argv: Sequence[str], log: Path | None = None, **popen) -> subprocess.Popen:
        """Start argv inside the namespace's network (host mounts and files); stopped by close()."""
        log = log or (self.etc / f"{Path(argv[0]).name}-{len(self._processes)}.log")
        with open(log, "ab") as output:
            process = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.name}", "--", *argv],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **popen,
            )
        process.log_path = str(log)  # type: ignore[attr-defined]
        self._processes.append(process)
        return process

    def wait_for_port(
        self, port: int, process: subprocess.Popen, timeout_s: float = START_TIMEOUT_S
    ) -> None:
        """Wait until something inside accepts TCP on port; raise with the log if process dies
        first."""
        self._wait_for_port(port, process, timeout_s)

    def repo_url(self, path: str) -> str:
        """restic's sftp URL for path: absolute, or relative to data_dir."""
        full = path if path.startswith("/") else str(self.data_dir / path)
        return f"sftp:{self.user}@{self.address}:{full}"

    def ssh_argv(
        self,
        key_file: str | None = None,
        known_hosts_file: str | None = None,
        connect_timeout_s: int = 5,
        options: Sequence[str] = (),
    ) -> list[str]:
        """`ssh ... root@address`, non-interactive and pinned to the host key. Give the in-container
        paths of bind-mounted copies of key_file and known_hosts_file to run it in a container;
        `options` (e.g. ["-o", "ServerAliveInterval=1"]) come first, so they win over the defaults
        (ssh keeps the first value it reads for an option)."""
        return [
            "ssh",
            *options,
            "-i",
            str(key_file or self.key_file),
            "-o",
            "UserKnownHostsFile=%s" % (known_hosts_file or self.known_hosts_file),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"ConnectTimeout={connect_timeout_s}",
            "-o",
            "ServerAliveInterval=2",
            "-o",
            "ServerAliveCountMax=3",
            f"{self.user}@{self.address}",
        ]

    def sftp_option(
        self, key_file: str | None = None, known_hosts_file: str | None = None
    ) -> list[str]:
        """restic's `-o sftp.command=...` arguments for this ASUSTOR."""
        return [
            "-o",
            "sftp.command={}".format(
                shlex.join([*self.ssh_argv(key_file, known_hosts_file), "-s", "sftp"])
            ),
        ]

    def ssh(self, *command: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run command on the ASUSTOR over ssh from the host (stdout/stderr captured as text)."""
        return subprocess.run(
            [*self.ssh_argv(), *command], capture_output=True, text=True, timeout=timeout
        )

    def reachable(self, port: int = SSH_PORT, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from the host to address:port succeeds now."""
        try:
            with socket.create_connection((self.address, port), timeout=timeout):
                return True
        except OSError:
            return False

    # ------------------------------------------------------------ faults

    def cut(self) -> None:
        """Take the link down (host side of the veth): the ASUSTOR drops off the network."""
        with self._lock:
            _run("ip", "link", "set", self.host_veth, "down")

    def restore(self, timeout_s: float = 10.0) -> None:
        """Bring the link back and wait until sshd answers again."""
        with self._lock:
            _run("ip", "link", "set", self.host_veth, "up")
        deadline = time.monotonic() + timeout_s
        while not self.reachable(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.address} is still unreachable {timeout_s:.0f} s "
                    "after the link came back"
                )
            time.sleep(0.05)

    def link_is_up(self) -> bool:
        return Path(f"/sys/class/net/{self.host_veth}/operstate").read_text().strip() == "up"

    def cut_for(self, seconds: float, after: float = 0.0) -> threading.Thread:
        """In a background thread: wait `after` seconds, cut the link, restore it `seconds` later.
        Returns the (started, daemon) thread; join() it to wait. close() cuts the wait short."""
        if not 0 < seconds <= MAX_CUT_S or not 0 <= after <= MAX_CUT_S:
            raise ValueError(
                f"cut_for(seconds={seconds!r}, after={after!r}): both must lie within {MAX_CUT_S} s"
            )

        def outage() -> None:
            if self._stop_cuts.wait(after):
                return
            self.cut()
            try:
                self._stop_cuts.wait(seconds)
            finally:
                if not self._closed:
                    self.restore()

        thread = threading.Thread(target=outage, name=f"{self.name}-cut", daemon=True)
        self._cut_threads.append(thread)
        thread.start()
        return thread

    def small_disk(self, mb: int) -> Path:
        """A directory on a fresh `mb` MiB tmpfs below data_dir: writes beyond it fail with
        ENOSPC."""
        path = Path(tempfile.mkdtemp(prefix=f"small-disk-{mb}m-", dir=self.data_dir))
        _run(
            "mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0755", "napdms-asustor-disk", str(path)
        )
        self._mounts.append(path)
        return path

    # ------------------------------------------------------------ teardown

    def close(self) -> None:
        """Stop everything started inside, delete the namespace, link, mounts and files.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop_cuts.set()
        for thread in self._cut_threads:
            thread.join(timeout=15)
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for path in reversed(self._mounts):
            _run("umount", "-l", str(path), check=False)
        if hasattr(self, "name"):
            workdir = getattr(self, "workdir", None)
            _remove_instance(self.name, self.index, str(workdir) if workdir else None)
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover - interpreter shutting down
            pass

    def __enter__(self) -> Asustor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Asustor({} at {})".format(getattr(self, "name", "?"), getattr(self, "address", "?"))
