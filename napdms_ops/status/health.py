"""A service's health: healthy, degraded or unhealthy, with the reasons.

The thresholds are the seed's HealthCheck: a database ping over 100 ms, a Redis ping over 50 ms
or an error rate from 1 % to 5 % is degraded; a database or Redis that does not answer, or an
error rate over 5 %, is unhealthy. Docker adds its own view of each replica (missing, stopped,
restarting, failing its health check). Every function here is pure: the inputs are what Docker
and Prometheus said, or None where they said nothing, which never counts as good or bad.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Health = Literal["healthy", "degraded", "unhealthy"]
Role = Literal["database", "redis"]
"""Services whose ping the seed's HealthCheck bounds: a database (PostgreSQL, MongoDB) or Redis."""

PING_LIMIT_MS: dict[Role, float] = {"database": 100.0, "redis": 50.0}
"""A ping slower than this is degraded (equal is still healthy)."""
ERROR_RATE_DEGRADED = 0.01
"""From this share of 5xx answers (included) a site is degraded..."""
ERROR_RATE_UNHEALTHY = 0.05
"""...and above this one (excluded) unhealthy."""
SLOW_SITE_S = 2.0
"""A public site answering slower than this on average is degraded (SC-011, as the
PublicSiteSlow alert: `components.monitoring.rules.SLOW_S`)."""
CERTIFICATE_DAYS = 14
"""An ACME certificate with fewer days left is degraded (the CertificateExpiringSoon alert)."""
RESTART_WINDOW_S = 900
"""A replica Docker restarted within this long counts as restarting (the ServiceRestarting
alert's window)..."""
RESTARTS = 3
"""...and as unhealthy from this many restarts (fewer: degraded)."""

_RANK: dict[Health, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(frozen=True)
class Verdict:
    """One check's outcome and, unless healthy, why."""

    health: Health
    reason: str | None = None


HEALTHY = Verdict("healthy")


def ping(role: Role, connected: bool | None, ping_ms: float | None) -> Verdict | None:
    """A database's or Redis' ping (a TCP connect from the prober): None when unknown."""
    if connected is None:
        return None
    if not connected:
        return Verdict("unhealthy", f"{role} disconnected (its port does not answer)")
    if ping_ms is None:
        return None
    limit = PING_LIMIT_MS[role]
    if ping_ms > limit:
        return Verdict("degraded", f"{role} ping {ping_ms:.1f} ms (over {limit:g} ms)")
    return HEALTHY


def error_rate(ratio: float | None) -> Verdict | None:
    """A site's share of 5xx answers over 5 minutes (None: unknown or no requests)."""
    if ratio is None:
        return None
    percent = f"{ratio * 100:.2f} % server errors"
    if ratio > ERROR_RATE_UNHEALTHY:
        return Verdict("unhealthy", f"{percent} (over {ERROR_RATE_UNHEALTHY:.0%})")
    if ratio >= ERROR_RATE_DEGRADED:
        return Verdict("degraded", f"{percent} (1-5 %)")
    return HEALTHY


def probe(kind: str, success: bool | None) -> Verdict | None:
    """The prober's check of a replica's health URL or port (`kind` http or tcp)."""
    if success is None:
        return None
    return HEALTHY if success else Verdict("unhealthy", f"fails its {kind} probe")


def site(success: bool | None, average_s: float | None) -> Verdict | None:
    """The public site through the proxy, as users reach it: down, or slow on average."""
    if success is None:
        return None
    if not success:
        return Verdict("unhealthy", "public site down through the proxy")
    if average_s is not None and average_s > SLOW_SITE_S:
        return Verdict("degraded", f"public site slow ({average_s:.2f} s, over {SLOW_SITE_S:g} s)")
    return HEALTHY


def certificate(expires: float | None, now: float) -> Verdict | None:
    """The site's certificate, `expires` a Unix time (None: unknown)."""
    if expires is None:
        return None
    days = (expires - now) / 86400
    if days <= 0:
        return Verdict("unhealthy", "certificate expired")
    if days < CERTIFICATE_DAYS:
        return Verdict("degraded", f"certificate expires in {days:.1f} days")
    return HEALTHY


def replica(
    container: str,
    exists: bool,
    running: bool,
    docker_health: str | None,
    restarts: int,
    started_at: datetime | None,
    now: datetime,
) -> Verdict:
    """One container as Docker reports it."""
    if not exists:
        return Verdict("unhealthy", f"{container} missing")
    if not running:
        return Verdict("unhealthy", f"{container} stopped")
    recent = started_at is not None and (now - started_at).total_seconds() < RESTART_WINDOW_S
    if restarts > 0 and recent:
        # Docker reports a container in a restart loop as running, between two of its crashes.
        health: Health = "unhealthy" if restarts >= RESTARTS else "degraded"
        return Verdict(health, f"{container} restarting ({restarts} restarts)")
    if docker_health == "unhealthy":
        return Verdict("unhealthy", f"{container} fails its health check")
    if docker_health == "starting":
        return Verdict("degraded", f"{container} starting (health check not passed yet)")
    return HEALTHY


def at_most(verdict: Verdict, ceiling: Health, note: str) -> Verdict:
    """`verdict` capped at `ceiling`, its reason prefixed with `note` (an idle colour's trouble
    costs the instant rollback, not the service)."""
    if _RANK[verdict.health] <= _RANK[ceiling]:
        return verdict
    return Verdict(ceiling, f"{note}: {verdict.reason}")


def worst(verdicts: Iterable[Verdict | None]) -> tuple[Health, list[str]]:
    """The worst health among the known `verdicts`, and every reason that is not healthy (worst
    first)."""
    known = sorted((v for v in verdicts if v is not None), key=lambda v: -_RANK[v.health])
    health: Health = known[0].health if known else "healthy"
    return health, [v.reason for v in known if v.health != "healthy" and v.reason]
