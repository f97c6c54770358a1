"""What the stack's own Prometheus knows about its services, read through its query API.

Prometheus listens on 9090 inside its container only, so `ContainerPrometheus` asks it from
there (busybox `wget`, as `napdms_ops.release.silence` talks to Alertmanager). `read_metrics`
takes any `PrometheusReader`, so the tests hand it canned answers. A metric Prometheus has no
sample of stays None: nothing here is ever guessed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

from components.monitoring.targets import PROBE_JOB, PUBLIC_JOB
from components.settings import Stack
from napdms_ops.release.runtime import DaemonError, Runtime

QUERY = "http://127.0.0.1:9090/api/v1/query?query="
"""Prometheus' instant query API inside its container."""
QUERY_TIMEOUT_S = 10.0
PROXY_COUNT = "caddy_http_request_duration_seconds_count"
"""The proxy's responses per site and status code (relabelled `site`, see prometheus_config)."""


class PrometheusError(Exception):
    """Prometheus could not be asked or did not answer a query; the message says which and why."""


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value (None for NaN)."""

    labels: Mapping[str, str]
    value: float | None


class PrometheusReader(Protocol):
    """Answers PromQL instant queries."""

    def query(self, expr: str) -> list[Sample]:
        """The instant vector `expr` evaluates to now; raises `PrometheusError`."""
        ...


def samples(document: str) -> list[Sample]:
    """The instant vector of an API answer (`{"status": "success", "data": {...}}`)."""
    try:
        answer = json.loads(document)
        if answer.get("status") != "success":
            raise PrometheusError(f"query failed: {answer.get('error', document.strip())}")
        data = answer["data"]
        if data["resultType"] != "vector":
            raise PrometheusError(f"expected an instant vector, got {data['resultType']}")
        found = []
        for series in data["result"]:
            value = float(series["value"][1])
            found.append(Sample(series["metric"], None if math.isnan(value) else value))
        return found
    except (ValueError, KeyError, TypeError, AttributeError):
        raise PrometheusError(f"not a Prometheus answer: {document.strip()[:200]!r}") from None


class ContainerPrometheus:
    """The Prometheus in container `container`, reached through `runtime`."""

    def __init__(self, runtime: Runtime, container: str):
        self.runtime = runtime
        self.container = container

    def query(self, expr: str) -> list[Sample]:
        try:
            code, output = self.runtime.exec(
                self.container, ["wget", "-qO-", QUERY + quote(expr)], timeout_s=QUERY_TIMEOUT_S
            )
        except DaemonError as error:
            raise PrometheusError(str(error)) from None
        if code != 0:
            reason = " ".join(output.split()) or f"wget exited {code}"
            raise PrometheusError(f"{self.container}: query API: {reason}")
        return samples(output)


@dataclass(frozen=True)
class Probe:
    """The prober's latest check of one replica (its health URL or port)."""

    instance: str
    colour: str | None
    success: bool
    seconds: float | None
    """How long the probe took: for a tcp probe, the connect, the platform's ping."""


@dataclass(frozen=True)
class Metrics:
    """Everything `status` reads from Prometheus for one stack, by service."""

    probes: dict[str, list[Probe]] = field(default_factory=dict)
    site_up: dict[str, bool] = field(default_factory=dict)
    site_seconds: dict[str, float | None] = field(default_factory=dict)
    """Average duration of the public probe over 5 minutes: the response time users see."""
    certificate_expiry: dict[str, float] = field(default_factory=dict)
    """Unix time the earliest certificate of the site's chain expires."""
    error_ratio: dict[str, float | None] = field(default_factory=dict)
    """Share of 5xx among the proxy's answers for the site over 5 minutes (None: no requests)."""
    last_backup: float | None = None
    """Unix time the backup agent last backed up every service."""
    service_backup: dict[str, float] = field(default_factory=dict)
    """Unix time each service was last backed up."""


def queries(stack: str) -> dict[str, str]:
    """The PromQL `read_metrics` asks, by what it is for."""
    mine = f'stack="{stack}"'
    answers = f"rate({PROXY_COUNT}{{{mine}}}[5m])"
    errors = f'rate({PROXY_COUNT}{{{mine},code=~"5.."}}[5m])'
    return {
        "probe_success": f'probe_success{{job="{PROBE_JOB}",{mine}}}',
        "probe_seconds": f'probe_duration_seconds{{job="{PROBE_JOB}",{mine}}}',
        "site_up": f'probe_success{{job="{PUBLIC_JOB}",{mine}}}',
        "site_seconds": f'avg_over_time(probe_duration_seconds{{job="{PUBLIC_JOB}",{mine}}}[5m])',
        "certificate": f'probe_ssl_earliest_cert_expiry{{job="{PUBLIC_JOB}",{mine}}}',
        # No `or vector(0)`: a site without requests has no ratio, not a ratio of zero.
        "error_ratio": f"sum by (site) ({errors}) / sum by (site) ({answers})",
        "last_backup": f"max(napdms_backup_last_success_timestamp_seconds{{{mine}}})",
        "service_backup": f"napdms_backup_service_last_success_timestamp_seconds{{{mine}}}",
    }


def read_metrics(stack: Stack, reader: PrometheusReader) -> Metrics:
    """Ask `reader` every query of `stack`; raises `PrometheusError` if any fails."""
    asked = {name: reader.query(expr) for name, expr in queries(stack.name).items()}
    seconds = {
        (s.labels.get("service"), s.labels.get("instance")): s.value for s in asked["probe_seconds"]
    }
    probes: dict[str, list[Probe]] = {}
    for s in asked["probe_success"]:
        service, instance = s.labels.get("service", ""), s.labels.get("instance", "")
        probes.setdefault(service, []).append(
            Probe(instance, s.labels.get("colour"), s.value == 1, seconds.get((service, instance)))
        )
    sites = {
        f"{spec.public.subdomain}.{stack.settings.domain}": name
        for name, spec in stack.services.items()
        if spec.public is not None
    }
    total_backup = [s.value for s in asked["last_backup"] if s.value is not None]
    return Metrics(
        probes=probes,
        site_up={s.labels["service"]: s.value == 1 for s in asked["site_up"]},
        site_seconds={s.labels["service"]: s.value for s in asked["site_seconds"]},
        certificate_expiry={
            s.labels["service"]: s.value for s in asked["certificate"] if s.value is not None
        },
        error_ratio={
            sites[s.labels["site"]]: s.value
            for s in asked["error_ratio"]
            if s.labels.get("site") in sites
        },
        last_backup=total_backup[0] if total_backup else None,
        service_backup={
            s.labels["service"]: s.value
            for s in asked["service_backup"]
            if "service" in s.labels and s.value is not None
        },
    )
