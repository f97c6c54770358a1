"""Locate, or start, the Docker engine used by the live tests and benchmarks.

Deliberately free of pytest so that benchmark scripts can import it too.
"""

import fcntl
import os
import shutil
import subprocess
import threading
import time

import docker
from docker.errors import DockerException

DEFAULT_HOST = "unix:///tmp/dockerd.sock"
DATA_ROOT = "/tmp/dockerd"
LOG_PATH = "/tmp/dockerd.log"
# Serialises dockerd start-up across processes (e.g. pytest-xdist workers).
START_LOCK_PATH = "/tmp/dockerd.start.lock"
START_TIMEOUT_S = 60.0
# Importing a multi-hundred-megabyte rootfs or running a long `RUN` step can
# keep a response silent for well over the SDK's default 60 s.
CLIENT_TIMEOUT_S = 600

_client = None
_client_lock = threading.Lock()


def _connect(base_url):
    """Return a client for base_url if a daemon answers there, else None."""
    try:
        # Constructing the client already queries the daemon's API version.
        client = docker.DockerClient(base_url=base_url, timeout=CLIENT_TIMEOUT_S)
        client.ping()
    except DockerException:
        return None
    return client


def _log_tail(lines=20):
    try:
        with open(LOG_PATH, errors="replace") as log:
            return "".join(log.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_dockerd():
    """Start dockerd on DEFAULT_HOST and return a client once it answers."""
    # Non-login shells (and non-root users) often lack /usr/sbin in PATH.
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if dockerd is None:
        raise RuntimeError(
            f"No Docker engine answers at {DEFAULT_HOST} and `dockerd` is not installed; "
            "install it with `apt-get install -y docker.io`."
        )
    with open(LOG_PATH, "ab") as log:
        # A new session keeps the daemon alive after the test process exits,
        # so later runs reuse it instead of paying the start-up again.
        process = subprocess.Popen(
            [dockerd, "--data-root", DATA_ROOT, "--host", DEFAULT_HOST],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        client = _connect(DEFAULT_HOST)
        if client is not None:
            return client
        if process.poll() is not None:
            raise RuntimeError(
                f"dockerd exited with status {process.returncode} during start-up; "
                f"tail of {LOG_PATH}:\n{_log_tail()}"
            )
        time.sleep(0.5)
    raise RuntimeError(
        f"dockerd (pid {process.pid}) did not answer at {DEFAULT_HOST} within "
        f"{START_TIMEOUT_S:.0f} s; tail of {LOG_PATH}:\n{_log_tail()}"
    )


def _open_engine():
    if os.environ.get("DOCKER_HOST"):
        # The caller chose an engine explicitly: never start a different one.
        host = os.environ["DOCKER_HOST"]
        try:
            client = docker.from_env(timeout=CLIENT_TIMEOUT_S)
            client.ping()
        except DockerException as exc:
            raise RuntimeError(
                f"DOCKER_HOST={host} is set but no Docker engine answers there: {exc}"
            ) from exc
        return client
    client = _connect(DEFAULT_HOST)
    if client is not None:
        return client
    with open(START_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have started the daemon while we waited.
        return _connect(DEFAULT_HOST) or _start_dockerd()


def engine_url() -> str:
    """The endpoint `ensure_engine` uses, for the docker CLI (DOCKER_HOST)."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def ensure_engine() -> docker.DockerClient:
    """Return a client for a running Docker engine, starting one if needed.

    Uses $DOCKER_HOST when set; otherwise unix:///tmp/dockerd.sock, starting
    `dockerd --data-root /tmp/dockerd --host unix:///tmp/dockerd.sock` (log in
    /tmp/dockerd.log) when nothing answers there.  The client is cached per
    process, so calling this repeatedly is cheap.  Raises RuntimeError saying
    what failed when no engine can be reached.
    """
    global _client
    with _client_lock:
        if _client is not None:
            try:
                _client.ping()
                return _client
            except DockerException:
                # The daemon went away (e.g. was restarted): reconnect below.
                _client = None
        _client = _open_engine()
        return _client
