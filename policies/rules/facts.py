"""What the rules look at: one neutral, typed description of a container, volume and network.

The same facts come from two places, the properties Pulumi declares (`from_pulumi.py`) and what
a live Docker daemon reports (`from_docker.py`), so one rule set serves the policy pack, the
runtime audit and the tests. Plain dataclasses: the pack needs nothing beyond the standard library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .names import EXEMPT_LABEL


@dataclass(frozen=True)
class Mount:
    """Something mounted into a container."""

    kind: str
    """`bind`, `volume` or `tmpfs`."""
    source: str
    """Host path for `bind`, volume name for `volume`, empty for `tmpfs`."""
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host."""

    host_ip: str
    """Empty, `0.0.0.0` or `::` mean every interface."""
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def all_interfaces(self) -> bool:
        """True when the port answers on every address of the host."""
        return self.host_ip in ("", "0.0.0.0", "::", "[::]")


class _Labelled:
    labels: Mapping[str, str]

    def exemption(self, rule_id: str) -> str | None:
        """The documented reason this subject is exempt from `rule_id`, if it has one."""
        # An empty reason documents nothing, so it exempts nothing.
        reason = (self.labels.get(EXEMPT_LABEL + rule_id) or "").strip()
        return reason or None


@dataclass(frozen=True)
class ContainerFacts(_Labelled):
    """A container's security-relevant settings, whatever reported them.

    `None` means "not known yet" (a Pulumi output during preview); rules that need such a field
    skip it rather than guess.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = ""
    user: str = ""
    """As given: `""` (the image's default), `root`, `1000`, `1000:1000`, `app:app`."""
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    """Upper case, without the `CAP_` prefix."""
    cap_drop: tuple[str, ...] = ()
    memory_bytes: int = 0
    cpus: float = 0.0
    """CPUs as a hard limit (NanoCpus or quota/period); 0 for none."""
    cpu_shares: int = 0
    pids_limit: int = 0
    """PidsLimit, or the nproc ulimit when that is the nearest control; 0 for none."""
    health_test: tuple[str, ...] = ()
    """The health check command; empty for none, `("NONE",)` when explicitly disabled."""
    read_only_root: bool = False
    security_opts: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    network_mode: str = ""
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""
    devices: tuple[str, ...] = ()
    """Host paths of mapped devices."""
    ports: tuple[PublishedPort, ...] = ()
    publish_all: bool = False
    """Every port the image exposes published on a random host port of every interface (`-P`)."""
    env: tuple[tuple[str, str], ...] = ()
    restart: str = ""
    """`no`, `always`, `unless-stopped`, `on-failure`; empty when unset (Docker's `no`)."""
    max_retries: int = 0
    log_driver: str = ""
    """Empty when unset (the daemon's default, json-file without rotation)."""
    log_opts: Mapping[str, str] = field(default_factory=dict)
    host: str = ""
    """Which Docker daemon runs it (provider URN or endpoint): ports only collide on one host."""


@dataclass(frozen=True)
class VolumeFacts(_Labelled):
    """A named volume and its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str = ""


@dataclass(frozen=True)
class NetworkFacts(_Labelled):
    """A network, whether it has a route out, and its labels."""

    name: str
    internal: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str = ""


@dataclass(frozen=True)
class StackFacts:
    """Everything one stack declares, or one daemon runs."""

    containers: tuple[ContainerFacts, ...] = ()
    volumes: tuple[VolumeFacts, ...] = ()
    networks: tuple[NetworkFacts, ...] = ()


def normalize_capability(name: str) -> str:
    """`cap_sys_admin`, `CAP_SYS_ADMIN` and `sys_admin` are all `SYS_ADMIN`."""
    return name.strip().upper().removeprefix("CAP_")


def split_env(entry: str) -> tuple[str, str]:
    """`KEY=value` as (`KEY`, `value`); a bare `KEY` has an empty value."""
    key, _sep, value = entry.partition("=")
    return key, value
