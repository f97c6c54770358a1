"""One stack's status: the release view (colours, replicas, last deploy) with each service's
health, response time, last backup and certificate expiry, the drift, and the lifecycle derived
from them.

Docker is always asked; Prometheus when the stack runs one that answers. Without it the health
comes from Docker alone and every metric is None, with `metrics.error` saying why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from components.model.spec import ServiceSpec
from components.settings import Stack
from napdms_ops.release.journal import Journal
from napdms_ops.release.runtime import Runtime
from napdms_ops.release.status import status as release_status
from napdms_ops.status import health as checks
from napdms_ops.status.drift_input import latest_drift
from napdms_ops.status.health import Role, Verdict
from napdms_ops.status.lifecycle import Lifecycles, Signals
from napdms_ops.status.prometheus import (
    ContainerPrometheus,
    Metrics,
    PrometheusError,
    PrometheusReader,
    read_metrics,
)

MONITOR = "prometheus"
DEPLOYS = ("up", "deploy", "switch", "rollback")
"""Trail commands that change what a stack runs."""
ROLES: dict[str, Role] = {"postgresql": "database", "mongodb": "database", "redis": "redis"}
"""A backup hook's kind -> the ping threshold its service gets."""

Runtimes = Callable[[str | None], Runtime]
PrometheusOf = Callable[[Stack, Runtimes], PrometheusReader]


def stack_prometheus(stack: Stack, runtimes: Runtimes) -> PrometheusReader:
    """The stack's own Prometheus (its first replica), asked from inside its container; raises
    `PrometheusError` when the stack runs none or it is not running."""
    if MONITOR not in stack.services:
        raise PrometheusError(f"{stack.name} does not enable {MONITOR}")
    container = f"{stack.name_prefix}-{stack.context.replica_names(MONITOR)[0]}"
    runtime = runtimes(stack.endpoint_of(MONITOR))
    if not runtime.state(container).running:
        raise PrometheusError(f"{container} is not running")
    return ContainerPrometheus(runtime, container)


def role_of(spec: ServiceSpec) -> Role | None:
    """Whether the service is a database or Redis (the seed's ping thresholds), by its dump hook."""
    return ROLES.get(spec.backup_hook.kind) if spec.backup_hook else None


def _iso(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _replica_verdict(replica: dict, now: datetime) -> Verdict:
    started = replica.get("started")
    return checks.replica(
        replica["container"],
        replica["health"] != "missing",
        bool(replica["running"]),
        replica["health"],
        int(replica["restarts"] or 0),
        datetime.fromisoformat(started) if started else None,
        now,
    )


def _docker_verdicts(entry: dict, now: datetime) -> list[Verdict]:
    if "colours" not in entry:
        return [_replica_verdict(r, now) for r in entry["replicas"]]
    verdicts = []
    for colour, data in entry["colours"].items():
        for replica in data["replicas"]:
            verdict = _replica_verdict(replica, now)
            if colour != entry["live"]:
                verdict = checks.at_most(verdict, "degraded", f"idle colour {colour}")
            verdicts.append(verdict)
    return verdicts


def _metric_verdicts(
    stack: Stack, service: str, live: str | None, metrics: Metrics, now: float
) -> list[Verdict | None]:
    spec = stack.services[service]
    role = role_of(spec)
    verdicts: list[Verdict | None] = []
    for probe in metrics.probes.get(service, []):
        if role is not None:
            ping_ms = probe.seconds * 1000 if probe.seconds is not None else None
            verdict = checks.ping(role, probe.success, ping_ms)
        else:
            verdict = checks.probe(spec.probe.kind if spec.probe else "health", probe.success)
        if verdict is not None and probe.colour is not None and probe.colour != live:
            verdict = checks.at_most(verdict, "degraded", f"idle colour {probe.colour}")
        verdicts.append(verdict)
    verdicts.append(checks.site(metrics.site_up.get(service), metrics.site_seconds.get(service)))
    verdicts.append(checks.error_rate(metrics.error_ratio.get(service)))
    if stack.settings.tls.mode == "acme":
        verdicts.append(checks.certificate(metrics.certificate_expiry.get(service), now))
    return verdicts


def _response_s(service: str, live: str | None, metrics: Metrics) -> float | None:
    """What users wait for a public site (its 5 min average), else the slowest live replica's
    probe (for a database or Redis: its ping)."""
    if metrics.site_seconds.get(service) is not None:
        return metrics.site_seconds[service]
    times = [
        p.seconds
        for p in metrics.probes.get(service, [])
        if p.seconds is not None and (p.colour is None or p.colour == live)
    ]
    return max(times) if times else None


def _last_deploy(report: dict, trail: Sequence[Any]) -> dict | None:
    """The newest `up`, deploy, switch or rollback on the stack's trail (whatever its result),
    else the newest release record of its services."""
    deploys = [
        {"time": r.time, "command": r.command, "service": r.service, "result": r.result}
        for r in trail
        if r.command in DEPLOYS
    ]
    deploys += [
        {"time": r["time"], "command": r["action"], "service": r["service"], "result": r["result"]}
        for r in (e["last"] for e in report["services"])
        if r
    ]
    return max(deploys, key=lambda r: r["time"]) if deploys else None


def _metrics(stack: Stack, runtimes: Runtimes, prometheus: PrometheusOf) -> tuple[Metrics, str]:
    try:
        return read_metrics(stack, prometheus(stack, runtimes)), ""
    except PrometheusError as error:
        return Metrics(), str(error)


def stack_status(
    stack: Stack,
    runtimes: Runtimes,
    journal: Journal,
    state: Path,
    lifecycles: Lifecycles,
    prometheus: PrometheusOf = stack_prometheus,
    trail: Callable[[], Sequence[Any]] = tuple,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, Any]:
    """Everything `status --stack` shows, as one JSON-ready document; moves the lifecycle to
    the state it derives (raises `DaemonError` when a daemon of the stack does not answer).
    `trail`: the stack's audit trail records (`napdms_ops.trail.records`), for the last deploy."""
    report = release_status(stack, runtimes, journal)
    moment = now()
    metrics, error = _metrics(stack, runtimes, prometheus)
    health: dict[str, checks.Health] = {}
    declared = missing = 0
    for entry in report["services"]:
        service = entry["service"]
        replicas = (
            [r for data in entry["colours"].values() for r in data["replicas"]]
            if "colours" in entry
            else entry["replicas"]
        )
        declared += len(replicas)
        missing += sum(r["health"] == "missing" for r in replicas)
        verdicts: list[Verdict | None] = list(_docker_verdicts(entry, moment))
        verdicts += _metric_verdicts(stack, service, entry["live"], metrics, moment.timestamp())
        entry["health"], entry["reasons"] = checks.worst(verdicts)
        health[service] = entry["health"]
        entry["response_s"] = _response_s(service, entry["live"], metrics)
        entry["error_ratio"] = metrics.error_ratio.get(service)
        entry["last_backup"] = _iso(metrics.service_backup.get(service))
        entry["certificate_expiry"] = _iso(metrics.certificate_expiry.get(service))
    drift = latest_drift(state, stack.name)
    signals = Signals(health, declared, missing, drift, lifecycles.recovery(stack.name))
    lifecycle = lifecycles.observe(stack.name, signals)
    report.update(
        checked=moment.isoformat(timespec="seconds").replace("+00:00", "Z"),
        lifecycle=lifecycle.model_dump(exclude={"stack"}),
        drift={
            "classification": drift.classification,
            "time": drift.time,
            "findings": drift.findings,
            "major": drift.major,
            "error": drift.error,
        },
        metrics={"available": not error, "error": error or None},
        last_backup=_iso(metrics.last_backup),
        last_deploy=_last_deploy(report, trail()),
        containers={"declared": declared, "missing": missing},
    )
    return report
