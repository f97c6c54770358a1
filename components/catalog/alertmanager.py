"""Alertmanager: routes alerts to mail (its network reaches the SMTP relay)."""

from components.model.spec import BackupPolicy, HealthCheck, ServiceSpec, VolumeMount

SPEC = ServiceSpec(
    name="alertmanager",
    description="Prometheus Alertmanager",
    image="docker.io/prom/alertmanager",
    tag="v0.28.1",
    user="65534:65534",
    command=[
        "--config.file=/etc/alertmanager/alertmanager.yml",
        "--storage.path=/alertmanager",
        # A single instance: no gossip port to open.
        "--cluster.listen-address=",
    ],
    volumes=[VolumeMount(name="data", path="/alertmanager", backup=BackupPolicy(policy="daily"))],
    tmpfs=["/tmp"],
    networks=["monitoring", "edge"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:9093/-/healthy"]),
    memory="256m",
    cpus=0.5,
)
