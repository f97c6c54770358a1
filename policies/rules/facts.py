"""What the rules look at: one neutral, typed description of a container, volume and network.

The same facts come from two places, the properties Pulumi declares (`from_pulumi.py`) and what
a live Docker daemon reports (`from_docker.py`), so one rule set serves the policy pack, the
runtime audit and the tests. Plain dataclasses: the pack needs nothing beyond the standard library.
"""

from __future__ import annotations

import ipaddress
import posixpath
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
    options: str = ""
    """A tmpfs's mount options as given (`rw,noexec,size=64m`); empty for Docker's defaults."""
    volume: str = ""
    """For a `bind` that a `local` volume makes (driver options `o: bind`, `device: <path>`):
    the volume's name, so a finding can say how the host path got in."""


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host."""

    host_ip: str
    """Empty, or any spelling of an unspecified address (`0.0.0.0`, `::`, `[::]`,
    `::ffff:0.0.0.0`), means every interface."""
    host_port: int
    container_port: int
    protocol: str = "tcp"

    @property
    def all_interfaces(self) -> bool:
        """True when the port answers on every address of the host."""
        return is_unspecified_address(self.host_ip)


class Labelled:
    """A named subject with Docker labels."""

    name: str
    labels: Mapping[str, str]

    def exemption(self, rule_id: str) -> str | None:
        """The exemption from `rule_id` this subject records with a label, if any. A record,
        not a waiver: only the stack's grant waives (see `grants.py`)."""
        # An empty reason documents nothing, so it exempts nothing.
        reason = (self.labels.get(EXEMPT_LABEL + rule_id) or "").strip()
        return reason or None


@dataclass(frozen=True)
class ContainerFacts(Labelled):
    """A container's security-relevant settings, whatever reported them.

    `None` means "not known yet" (a Pulumi output during preview); rules that need such a field
    skip it rather than guess.
    """

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str | None = ""
    user: str = ""
    """As given: `""` (the image's default), `root`, `1000`, `1000:1000`, `app:app`."""
    group_add: tuple[str, ...] = ()
    """Supplementary groups, names or gids, as given."""
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    """Upper case, without the `CAP_` prefix."""
    cap_drop: tuple[str, ...] = ()
    memory_bytes: int = 0
    memory_swap_bytes: int | None = None
    """Memory plus swap in bytes, as Docker takes it: -1 for unlimited swap, 0 when unset (with
    a memory limit Docker then allows as much swap again), equal to memory for no swap; None when
    not known."""
    cpus: float = 0.0
    """CPUs as a hard limit (NanoCpus or quota/period); 0 for none."""
    cpu_shares: int = 0
    pids_limit: int = 0
    """The PIDs cgroup limit: HostConfig.PidsLimit on a live daemon; for a declared container,
    what the stack's `docker update --pids-limit` command sets (the pack attaches it, see
    `from_pulumi.pids_limits_from_commands`). 0 for none; an nproc ulimit is not one."""
    health_test: tuple[str, ...] = ()
    """The health check command; empty for none, `("NONE",)` when explicitly disabled."""
    read_only_root: bool = False
    security_opts: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    volumes_from: tuple[str, ...] = ()
    """Containers whose mounts this one inherits (`volumes_from`, `from_container`)."""
    network_mode: str = ""
    pid_mode: str = ""
    ipc_mode: str = ""
    uts_mode: str = ""
    userns_mode: str = ""
    cgroupns_mode: str = ""
    """`host`, `private`, or empty for the daemon's default."""
    runtime: str = ""
    """The OCI runtime; empty for the daemon's default."""
    devices: tuple[str, ...] = ()
    """Host paths of mapped devices."""
    device_requests: tuple[str, ...] = ()
    """GPUs and other devices requested from a device driver, one description each."""
    device_cgroup_rules: tuple[str, ...] = ()
    """Extra device cgroup rules (`c 1:3 mr`): access to host devices created later."""
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
class VolumeFacts(Labelled):
    """A named volume, its driver and its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    host: str = ""
    driver: str = ""
    """Empty or `local` for Docker's built-in driver."""
    options: Mapping[str, str] = field(default_factory=dict)
    """Driver options (`type`, `o`, `device` for `local`)."""

    @property
    def bind_source(self) -> str | None:
        """The host path the volume really is, when it is a bind in disguise."""
        return local_bind_source(self.driver, self.options)


@dataclass(frozen=True)
class NetworkFacts(Labelled):
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


def local_bind_source(driver: str, options: Mapping[str, str]) -> str | None:
    """The host path a `local` volume mounts, None for an ordinary volume.

    `local` with `o: bind` (or `rbind`) and `device: /srv/x` is a bind mount of /srv/x under a
    volume's name; `local` with a block device (`type: ext4`, `device: /dev/sda1`) mounts a host
    disk. NFS and CIFS devices (`:/export`, `//server/share`) are not host paths.
    """
    if (driver or "local").strip().lower() != "local":
        return None
    opts = {str(k).strip().lower(): str(v) for k, v in options.items()}
    device = opts.get("device", "").strip()
    mount_options = {o.strip().lower() for o in opts.get("o", "").split(",")}
    if not device.startswith("/") or device.startswith("//"):
        return None
    if mount_options & {"bind", "rbind"} or device.startswith("/dev/"):
        return device
    return None


def normalize_host_path(path: str) -> str:
    """The path a bind names, with `.`, `..`, repeated and trailing slashes resolved (as the
    kernel would, without following links): `/srv/../etc/`, `//etc` and `/./etc` are `/etc`."""
    # posixpath keeps a leading `//` (POSIX leaves its meaning open); Linux reads it as `/`.
    return posixpath.normpath("/" + path.strip().lstrip("/"))


def is_unspecified_address(host_ip: str) -> bool:
    """True for an empty address or any spelling of 0.0.0.0 or :: (bracketed, IPv4-mapped,
    zero-padded, with a zone)."""
    text = host_ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    if not text:
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if address.is_unspecified:
        return True
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped is not None and mapped.is_unspecified


def normalize_capability(name: str) -> str:
    """`cap_sys_admin`, `CAP_SYS_ADMIN` and `sys_admin` are all `SYS_ADMIN`."""
    return name.strip().upper().removeprefix("CAP_")


def split_env(entry: str) -> tuple[str, str]:
    """`KEY=value` as (`KEY`, `value`); a bare `KEY` has an empty value."""
    key, _sep, value = entry.partition("=")
    return key, value
