"""Gitea (rootless image): source hosting, configured entirely through GITEA__ variables."""

from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Port,
    Probe,
    PublicRoute,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

SPEC = ServiceSpec(
    name="gitea",
    description="Gitea, rootless image, PostgreSQL backend, SSH on 2222",
    image="docker.io/gitea/gitea",
    tag="1.25.3-rootless",
    user="1000:1000",
    env={
        "GITEA__database__DB_TYPE": "postgres",
        "GITEA__database__HOST": "postgres:5432",
        "GITEA__database__NAME": "gitea",
        "GITEA__database__USER": "gitea",
        "GITEA__server__ROOT_URL": "https://git.{domain}/",
        "GITEA__server__SSH_DOMAIN": "git.{domain}",
        "GITEA__server__SSH_PORT": "2222",
        "GITEA__security__INSTALL_LOCK": "true",
        # /metrics for Prometheus, on the app network only (the proxy does not route it).
        "GITEA__metrics__ENABLED": "true",
    },
    ports=[Port(internal=2222, external=2222)],
    volumes=[
        VolumeMount(name="data", path="/var/lib/gitea", backup=BackupPolicy(policy="daily")),
        VolumeMount(name="config", path="/etc/gitea", backup=BackupPolicy(policy="daily")),
    ],
    tmpfs=["/tmp"],
    secrets=[
        SecretUse(secret="gitea-db-password", env="GITEA__database__PASSWD__FILE"),
        SecretUse(secret="gitea-secret-key", env="GITEA__security__SECRET_KEY__FILE"),
        SecretUse(secret="gitea-internal-token", env="GITEA__security__INTERNAL_TOKEN__FILE"),
    ],
    networks=["app", "data"],
    health=HealthCheck(
        test=["CMD", "curl", "-fsS", "http://127.0.0.1:3000/api/healthz"], start_period="60s"
    ),
    memory="1g",
    cpus=1,
    public=PublicRoute(subdomain="git", port=3000),
    depends_on=["postgres"],
    metrics=MetricsEndpoint(port=3000),
    probe=Probe(kind="http", port=3000, path="/api/healthz"),
)
