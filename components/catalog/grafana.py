"""Grafana: dashboards over Prometheus and Loki."""

from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    PublicRoute,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

SPEC = ServiceSpec(
    name="grafana",
    description="Grafana dashboards",
    image="docker.io/grafana/grafana",
    tag="12.2.0",
    user="472:472",
    env={
        "GF_SERVER_ROOT_URL": "https://grafana.{domain}/",
        "GF_SECURITY_ADMIN_USER": "admin",
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_PATHS_DATA": "/var/lib/grafana",
    },
    volumes=[
        VolumeMount(name="data", path="/var/lib/grafana", backup=BackupPolicy(policy="daily"))
    ],
    tmpfs=["/tmp"],
    secrets=[SecretUse(secret="grafana-admin-password", env="GF_SECURITY_ADMIN_PASSWORD__FILE")],
    networks=["monitoring", "app"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:3000/api/health"]),
    memory="512m",
    cpus=0.5,
    public=PublicRoute(subdomain="grafana", port=3000),
)
