"""What the release flows read from and run in a Docker endpoint's containers.

`Runtime` is the seam (the tests fake it); `DockerRuntime` implements it with the docker SDK over
one endpoint (the local socket, or `ssh://` as the stack's hosts name it).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

EXEC_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 30
NEVER = "0001-01-01T00:00:00Z"
"""How Docker writes a moment that has not happened (a container never stopped)."""


class DaemonError(Exception):
    """The endpoint failed a request; the message names the container and the fix."""


@dataclass(frozen=True)
class ContainerState:
    """One container as its daemon reports it."""

    exists: bool
    running: bool = False
    health: str | None = None
    """`healthy`, `unhealthy`, `starting`, or None without a health check (or container)."""
    image_id: str | None = None
    repo_digest: str | None = None
    """`sha256:...` the image was pulled by, None for an image built or imported locally."""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    restart_count: int = 0
    health_output: str | None = None
    """What the last health check printed."""


MISSING = ContainerState(exists=False)


class Runtime(Protocol):
    """The containers of one Docker endpoint."""

    def state(self, container: str) -> ContainerState:
        """The container named `container` (`MISSING` when there is none)."""
        ...

    def exec(
        self,
        container: str,
        argv: list[str],
        stdin: bytes | None = None,
        timeout_s: float = EXEC_TIMEOUT_S,
    ) -> tuple[int, str]:
        """Run `argv` in the running container (stdin fed, then closed); exit code and output."""
        ...


def docker_time(value: str | None) -> datetime | None:
    """A Docker timestamp (nanoseconds, `Z`) as an aware datetime; None for Docker's zero time."""
    if not value or value == NEVER:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    moment = datetime.fromisoformat(f"{whole}.{micro}{'+00:00' if zone == 'Z' else zone}")
    return moment.astimezone(UTC)


def state_of(attrs: dict[str, Any], repo_digests: list[str]) -> ContainerState:
    """`ContainerState` from a container's inspect document and its image's `RepoDigests`."""
    status = attrs.get("State") or {}
    health = status.get("Health") or {}
    log = health.get("Log") or []
    repository = (attrs.get("Config") or {}).get("Image", "").split("@")[0]
    repository = re.sub(r":[^/:]+$", "", repository)
    digests = [d.split("@", 1)[1] for d in repo_digests if "@" in d]
    matching = [d.split("@", 1)[1] for d in repo_digests if d.split("@", 1)[0] == repository]
    return ContainerState(
        exists=True,
        running=bool(status.get("Running")),
        health=health.get("Status"),
        image_id=attrs.get("Image"),
        repo_digest=(matching or digests or [None])[0],
        started_at=docker_time(status.get("StartedAt")),
        finished_at=docker_time(status.get("FinishedAt")),
        restart_count=int(attrs.get("RestartCount") or 0),
        health_output=(log[-1].get("Output") or "").strip() if log else None,
    )


def connect(endpoint: str | None) -> Any:
    """A docker SDK client of `endpoint` (None: DOCKER_HOST, else the local socket), as
    `napdms_ops.audit.connect` makes one: the system ssh client for `ssh://` (ssh config, agent,
    known hosts, as the docker CLI)."""
    import docker

    try:
        if endpoint is None:
            return docker.from_env(timeout=CLIENT_TIMEOUT_S)
        return docker.DockerClient(
            base_url=endpoint,
            timeout=CLIENT_TIMEOUT_S,
            use_ssh_client=endpoint.startswith("ssh://"),
        )
    except Exception as error:  # DockerException, or requests' errors for a malformed endpoint
        raise DaemonError(
            f"{endpoint or 'DOCKER_HOST'}: cannot connect to the Docker daemon "
            f"({' '.join(str(error).split())}); check that it runs and the endpoint is right"
        ) from None


class DockerRuntime:
    """The containers of one Docker endpoint (None: DOCKER_HOST or the local socket), through
    the docker SDK; `client` replaces the connection made on first use."""

    def __init__(self, endpoint: str | None = None, client: Any = None):
        self.endpoint = endpoint
        self._client = client

    @property
    def client(self) -> Any:
        """The SDK client, connected on first use."""
        if self._client is None:
            self._client = connect(self.endpoint)
        return self._client

    def state(self, container: str) -> ContainerState:
        from docker.errors import DockerException, NotFound

        try:
            attrs = self.client.api.inspect_container(container)
        except NotFound:
            return MISSING
        except DockerException as error:
            raise DaemonError(self._failed(container, error)) from None
        try:
            image = self.client.api.inspect_image(attrs["Image"])
        except DockerException:
            image = {}  # removed under it: the digest is unknown, the rest still holds
        return state_of(attrs, image.get("RepoDigests") or [])

    def exec(
        self,
        container: str,
        argv: list[str],
        stdin: bytes | None = None,
        timeout_s: float = EXEC_TIMEOUT_S,
    ) -> tuple[int, str]:
        from docker.errors import DockerException
        from docker.utils.socket import frames_iter

        api = self.client.api
        try:
            exec_id = api.exec_create(container, argv, stdin=stdin is not None)["Id"]
            stream = api.exec_start(exec_id, socket=True)
            raw = getattr(stream, "_sock", stream)
            raw.settimeout(timeout_s)
            try:
                if stdin is not None:
                    raw.sendall(stdin)
                    # End of input, the output still to come.
                    raw.shutdown(socket.SHUT_WR)
                output = b"".join(frame for _, frame in frames_iter(stream, tty=False))
            finally:
                stream.close()
            code = api.exec_inspect(exec_id).get("ExitCode")
        except (DockerException, OSError) as error:
            raise DaemonError(self._failed(container, error)) from None
        return (1 if code is None else int(code)), output.decode(errors="replace")

    def _failed(self, container: str, error: Exception) -> str:
        reason = " ".join(str(error).split())
        return (
            f"{self.endpoint or 'DOCKER_HOST'}: {container}: the Docker daemon failed the "
            f"request ({reason}); "
            "check the daemon and the container, then run the command again"
        )
