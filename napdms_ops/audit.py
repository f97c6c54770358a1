"""`napdms-ops audit`: the shared hardening rules (`policies.rules`) over what a live Docker daemon
runs, including the containers no stack manages.

How the daemon is judged (one pass, one decision per subject):

- Every container, volume and network belongs to the stack named by its `napdms.stack` label when
  `policies/config/<stack>.json` exists; anything else (unlabelled, or an unknown stack) is judged
  at the levels of `--stack` (default `prod`, the strictest). The `unmanaged-container` rule
  reports the containers no stack declares.
- Container rules run on each container with the settings and level of its stack.
- Stack rules run over the whole daemon at once, not per stack: host ports, the volumes a mount
  can reach and networks are shared by everything on one daemon, so `host-port-conflict` must
  see a dev container and a prod container that publish the same port. They run once per stack
  present (each stack's settings, e.g. `stateless-replicas.minReplicas`), and each run keeps only
  the findings whose subject belongs to that stack, so every finding is reported once, at its
  subject's level.
- (`policies.rules.judge`) A rule disabled for a stack is not run on its subjects,
  and an exempted finding (`napdms.exempt.<rule-id>: <reason>`) is always advisory.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

from policies.rules import StackFacts, StackLevels, Verdict, judge
from policies.rules import from_docker, levels
from policies.rules.facts import ContainerFacts, NetworkFacts, VolumeFacts

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_STACK = "prod"
"""Levels for what no known stack claims: the strictest stack."""
INSPECT_WORKERS = 8
"""Concurrent `GET /containers/{id}/json` calls: enough to hide the round trips, small enough for
a NAS daemon (and within the SDK's connection pool)."""
CLIENT_TIMEOUT_S = 30

class AuditError(Exception):
    """The daemon or the policy config cannot be used; the one-line message says what to do."""


@dataclass(frozen=True)
class AuditReport:
    """What one audit of one daemon found."""

    host: str
    stack: str
    """Levels used for containers, volumes and networks no known stack claims."""
    containers: int
    volumes: int
    networks: int
    verdicts: tuple[Verdict, ...]
    """Mandatory first, then in rule order and by subject."""

    @property
    def mandatory(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.mandatory]

    @property
    def advisory(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.mandatory]

    @property
    def exit_code(self) -> int:
        """1 when any finding is mandatory, else 0."""
        return 1 if self.mandatory else 0


def default_host(environ: Mapping[str, str] = os.environ) -> str:
    """DOCKER_HOST when set, else the local daemon's socket."""
    return environ.get("DOCKER_HOST") or DEFAULT_HOST


def audit(host: Optional[str] = None, stack: Optional[str] = None) -> AuditReport:
    """Inspect every container (all states), volume and network of the daemon at `host` and judge
    them with the shared rules (see the module docstring for which levels apply)."""
    host = host or default_host()
    stack = stack or DEFAULT_STACK
    stack_levels = _levels_loader()
    if stack_levels(stack) is None:  # a wrong --stack fails before the daemon is contacted
        try:
            levels.load(stack)
        except levels.LevelsError as error:
            raise AuditError(str(error)) from None
    containers, volumes, networks = read_daemon(host)
    verdicts = judge(StackFacts(tuple(containers), tuple(volumes), tuple(networks)), stack, stack_levels)
    return AuditReport(host, stack, len(containers), len(volumes), len(networks), tuple(verdicts))


def connect(host: str):
    """A client for `host`, or an AuditError naming the endpoint and the fix."""
    import docker  # imported here so `napdms-ops --help` and the other commands stay fast

    try:
        return docker.DockerClient(
            base_url=host,
            timeout=CLIENT_TIMEOUT_S,
            max_pool_size=INSPECT_WORKERS,
            # The system ssh client, as the docker CLI uses it (ssh config, agent, known hosts).
            use_ssh_client=host.startswith("ssh://"),
        )
    except Exception as error:  # DockerException, or requests' errors for a malformed endpoint
        raise _unreachable(host, "cannot connect", error) from None


def read_daemon(host: str) -> tuple[list[ContainerFacts], list[VolumeFacts], list[NetworkFacts]]:
    """Facts of every container, volume and network of the daemon at `host`."""
    from docker.errors import NotFound

    client = connect(host)
    try:
        api = client.api
        listed = api.containers(all=True)

        def inspect(summary: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
            try:
                return api.inspect_container(summary["Id"])
            except NotFound:
                return None  # removed between the listing and the inspect

        with ThreadPoolExecutor(max_workers=INSPECT_WORKERS) as pool:
            inspected = [doc for doc in pool.map(inspect, listed) if doc is not None]
        volumes = (api.volumes() or {}).get("Volumes") or []
        networks = api.networks()
    except AuditError:
        raise
    except Exception as error:
        raise _unreachable(host, "lost the daemon while reading it", error) from None
    finally:
        client.close()
    return (
        [from_docker.container(doc, host) for doc in inspected],
        [from_docker.volume(doc, host) for doc in volumes],
        [from_docker.network(doc, host) for doc in networks],
    )


def _levels_loader() -> Callable[[str], Optional[StackLevels]]:
    """Load each stack's config once; None for a stack without a config file, AuditError for a
    config file that cannot be used."""
    known = {path.stem for path in levels.CONFIG_DIR.glob("*.json")}
    cache: dict[str, Optional[StackLevels]] = {}

    def load(name: str) -> Optional[StackLevels]:
        if name not in cache:
            if name not in known:
                cache[name] = None
            else:
                try:
                    cache[name] = levels.load(name)
                except levels.LevelsError as error:
                    raise AuditError(str(error)) from None
        return cache[name]

    return load


def _unreachable(host: str, what: str, error: BaseException) -> AuditError:
    reason = re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__
    if "paramiko" in reason:
        return AuditError(f"{host}: {what}: the docker SDK needs paramiko for ssh:// endpoints; pip install paramiko")
    return AuditError(
        f"{host}: {what} ({reason}); start dockerd there, or point --host (or DOCKER_HOST) at a "
        "running daemon, e.g. unix:///var/run/docker.sock or ssh://deploy@qnap.<domain>"
    )


# ------------------------------------------------------------------------------ rendering


def level_text(verdict: Verdict) -> str:
    """`mandatory`, `advisory`, or `advisory (exempt: <reason>)`."""
    if verdict.finding.exempt_reason:
        return f"advisory (exempt: {verdict.finding.exempt_reason})"
    return verdict.level


def summary(report: AuditReport) -> str:
    """One line: what was read and what was found."""
    return (
        f"{report.host}: {report.containers} containers, {report.volumes} volumes, {report.networks} networks; "
        f"{len(report.mandatory)} mandatory, {len(report.advisory)} advisory "
        f"(unmanaged judged at {report.stack} levels)"
    )


def document(report: AuditReport) -> dict[str, Any]:
    """The `--json` document."""
    return {
        "host": report.host,
        "stack": report.stack,
        "containers": report.containers,
        "volumes": report.volumes,
        "networks": report.networks,
        "mandatory": len(report.mandatory),
        "advisory": len(report.advisory),
        "findings": [
            {
                "rule": v.finding.rule.id,
                "level": v.level,
                "severity": v.finding.rule.severity,
                "cis": v.finding.rule.cis,
                "subject": v.finding.subject,
                "problem": v.finding.problem,
                "fix": v.finding.rule.fix,
                "exempt_reason": v.finding.exempt_reason,
            }
            for v in report.verdicts
        ],
    }


def table(verdicts: Sequence[Verdict]):
    """A rich table of the findings, in the order given."""
    from rich.table import Table

    grid = Table(show_lines=False, expand=False)
    grid.add_column("level", no_wrap=True)
    grid.add_column("rule", no_wrap=True)
    grid.add_column("CIS", no_wrap=True)
    grid.add_column("subject")
    grid.add_column("problem + fix")
    for verdict in verdicts:
        finding = verdict.finding
        style = "bold red" if verdict.mandatory else "yellow"
        grid.add_row(
            f"[{style}]{_escape(level_text(verdict))}[/]",
            finding.rule.id,
            finding.rule.cis or "-",
            _escape(finding.subject),
            _escape(f"{finding.problem}. Fix: {finding.rule.fix}"),
        )
    return grid


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
