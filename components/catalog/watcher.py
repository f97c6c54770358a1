"""The watcher: a small Prometheus on the backup host that pages when the primary's monitoring
goes silent (`components/monitoring/watcher.py`)."""

from __future__ import annotations

from components.model.context import CatalogContext
from components.model.spec import BackupPolicy, HealthCheck, ServiceSpec, VolumeMount
from components.monitoring import prometheus_config, watcher

SPEC = ServiceSpec(
    name=watcher.WATCHER,
    description="Prometheus on the backup host watching the primary's Watchdog",
    image="docker.io/prom/prometheus",
    tag="v3.5.0",
    user="65534:65534",
    command=[
        f"--config.file={prometheus_config.CONFIG_DIR}/{prometheus_config.CONFIG_FILE}",
        "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=2d",
    ],
    volumes=[
        VolumeMount(
            name="data",
            path="/prometheus",
            backup=BackupPolicy(policy="exclude", reason="two days of the watcher's own state"),
        )
    ],
    tmpfs=["/tmp"],
    config_dir=prometheus_config.CONFIG_DIR,
    # edge: the primary's Prometheus is reached on its LAN address; monitoring: by its alias
    # when both run on one host (dev), and the watcher's Alertmanager.
    networks=["monitoring", "edge"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/healthy"]),
    memory="256m",
    cpus=0.25,
    placement="backup",
    depends_on=["watcher-alertmanager"],
)


def files(context: CatalogContext) -> dict[str, str]:
    """The watcher's configuration and rules."""
    return watcher.files(context)
