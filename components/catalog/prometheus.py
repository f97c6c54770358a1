"""Prometheus: scrapes every service's metrics and probes, evaluates the alert rules, all
generated from the catalog (`components/monitoring`)."""

from collections.abc import Mapping

from components.model.context import CatalogContext
from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Port,
    Probe,
    ServiceSpec,
    VolumeMount,
)
from components.monitoring import prometheus_config
from components.monitoring.watcher import WATCHER

SPEC = ServiceSpec(
    name="prometheus",
    description="Prometheus time-series database",
    image="docker.io/prom/prometheus",
    tag="v3.5.0",
    user="65534:65534",
    command=[
        f"--config.file={prometheus_config.CONFIG_DIR}/{prometheus_config.CONFIG_FILE}",
        "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=30d",
    ],
    volumes=[
        VolumeMount(
            name="data",
            path="/prometheus",
            backup=BackupPolicy(
                policy="exclude", reason="metrics history is diagnostic and re-scraped"
            ),
        )
    ],
    tmpfs=["/tmp"],
    config_dir=prometheus_config.CONFIG_DIR,
    networks=["monitoring", "app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/healthy"]),
    memory="2g",
    cpus=1,
    metrics=MetricsEndpoint(port=9090),
    probe=Probe(kind="http", port=9090, path="/-/healthy"),
    monitors=["monitoring"],
)


WATCHED_PORT = Port(internal=9090, external=9090)
"""Published on the primary's LAN address only when the watcher runs on another host, to read
the Watchdog from here. No admin API or lifecycle endpoint is enabled: the port is read-only."""


def for_placements(spec: ServiceSpec, placements: Mapping[str, tuple[str, ...]]) -> ServiceSpec:
    """`spec` with `WATCHED_PORT` when the watcher runs on a host Prometheus does not."""
    here = set(placements.get(spec.name, ()))
    if set(placements.get(WATCHER, ())) - here:
        return spec.model_copy(update={"ports": [*spec.ports, WATCHED_PORT]})
    return spec


def files(context: CatalogContext) -> dict[str, str]:
    """prometheus.yml and the alert rules, for this stack's services."""
    return prometheus_config.files(context)
