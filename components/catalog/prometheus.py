"""Prometheus: metrics and alert rules (rules and targets come with the monitoring issue)."""

from components.model.spec import BackupPolicy, HealthCheck, ServiceSpec, VolumeMount

SPEC = ServiceSpec(
    name="prometheus",
    description="Prometheus time-series database",
    image="docker.io/prom/prometheus",
    tag="v3.5.0",
    user="65534:65534",
    command=[
        "--config.file=/etc/prometheus/prometheus.yml",
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
    networks=["monitoring", "app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9090/-/healthy"]),
    memory="2g",
    cpus=1,
)
