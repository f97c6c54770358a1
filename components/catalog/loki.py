"""Loki: log storage, fed by the log shipper."""

from components.model.spec import BackupPolicy, HealthCheck, ServiceSpec, VolumeMount

SPEC = ServiceSpec(
    name="loki",
    description="Grafana Loki, single binary, filesystem storage (3.6+ images ship no wget)",
    image="docker.io/grafana/loki",
    tag="3.5.8",
    user="10001:10001",
    command=["-config.file=/etc/loki/local-config.yaml"],
    volumes=[
        VolumeMount(
            name="data",
            path="/loki",
            backup=BackupPolicy(
                policy="exclude", reason="logs are diagnostics kept 30 days, not restored"
            ),
        )
    ],
    tmpfs=["/tmp"],
    networks=["monitoring"],
    health=HealthCheck(
        test=["CMD", "wget", "-qO-", "http://127.0.0.1:3100/ready"], start_period="60s"
    ),
    memory="1g",
    cpus=1,
)
