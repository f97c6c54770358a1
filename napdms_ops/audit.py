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
- (`policies.rules.judge`) A rule disabled for a stack is not run on its subjects, and a finding
  is advisory only when that stack's config grants the subject an exemption from the rule and the
  subject records it (`napdms.exempt.<rule-id>` label); a label alone waives nothing and is
  itself an `unauthorised-exemption` finding. The pack reads the same grants from the same file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from policies.rules import StackFacts, StackLevels, Verdict, from_docker, judge, levels
from policies.rules.facts import ContainerFacts, NetworkFacts, VolumeFacts

if TYPE_CHECKING:  # rich is imported when a report is printed, to keep the CLI's start fast
    from rich.console import Console
    from rich.table import Table

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


def audit(host: str | None = None, stack: str | None = None) -> AuditReport:
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
    verdicts = judge(
        StackFacts(tuple(containers), tuple(volumes), tuple(networks)), stack, stack_levels
    )
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

        def inspect(summary: Mapping[str, Any]) -> Mapping[str, Any] | None:
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


def _levels_loader() -> Callable[[str], StackLevels | None]:
    """Load each stack's config once; None for a stack without a config file, AuditError for a
    config file that cannot be used."""
    known = {path.stem for path in levels.CONFIG_DIR.glob("*.json")}
    cache: dict[str, StackLevels | None] = {}

    def load(name: str) -> StackLevels | None:
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
        return AuditError(
            f"{host}: {what}: the docker SDK needs paramiko for ssh:// endpoints; "
            "pip install paramiko"
        )
    return AuditError(
        f"{host}: {what} ({reason}); start dockerd there, or point --host (or DOCKER_HOST) at a "
        "running daemon, e.g. unix:///var/run/docker.sock or ssh://deploy@qnap.<domain>"
    )


# ------------------------------------------------------------------------------ rendering

LEVEL_STYLES = {"mandatory": "bold red", "advisory": "yellow", "exempt": "dim"}
"""Colours of the level column; rich drops them when the output is not a terminal."""


def level_text(verdict: Verdict) -> str:
    """`mandatory`, `advisory`, or `exempt` for an exempted finding (advisory, and its reason is
    shown with the problem)."""
    return "exempt" if verdict.finding.exempt_reason else verdict.level


def summary(report: AuditReport) -> str:
    """One line: what was read and what was found."""
    return (
        f"{report.host}: {report.containers} containers, {report.volumes} volumes, "
        f"{report.networks} networks; {len(report.mandatory)} mandatory, "
        f"{len(report.advisory)} advisory (unmanaged judged at {report.stack} levels)"
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


def print_report(report: AuditReport, out: Console) -> None:
    """The findings table (when there are findings), then the summary wrapped to `out`'s width."""
    from rich.text import Text

    if report.verdicts:
        out.print(table(report.verdicts))
        out.print()
    out.print(Text(summary(report)))


def table(verdicts: Sequence[Verdict]) -> Table:
    """A rich table of the findings, in the order given, that reads at 80 columns.

    Subject over rule id in the first column, a one-word level, the CIS id, then the problem, the
    exemption reason when there is one, and the fix, wrapped in the last column. No column is
    cut with an ellipsis: a subject longer than its share of the width folds onto more lines.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    grid = Table(
        # No vertical rules, no outer edge, two spaces between columns: the width goes to the
        # text, and a finding starts at column 0 in a log. A blank line separates findings.
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_lines=True,
    )
    # Every column may wrap, so rich shrinks the widest (problem) first and never crops a cell;
    # "fold" breaks a word longer than its column instead of hiding its end behind "…".
    grid.add_column("subject / rule", overflow="fold")
    grid.add_column("level", overflow="fold")
    grid.add_column("CIS", overflow="fold")
    grid.add_column("problem + fix", overflow="fold")
    for verdict in verdicts:
        finding = verdict.finding
        level = level_text(verdict)
        details = [finding.problem]
        if finding.exempt_reason:
            details.append(f"exempt: {finding.exempt_reason}")
        details.append(f"Fix: {finding.rule.fix}")
        grid.add_row(
            Text.assemble((finding.subject, "bold"), "\n", finding.rule.id),
            Text(level, style=LEVEL_STYLES[level]),
            Text(finding.rule.cis or "-"),
            Text("\n".join(details)),
        )
    return grid
