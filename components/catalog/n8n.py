"""n8n: workflow automation, on PostgreSQL (every n8n variable accepts a _FILE form)."""

from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    MetricsEndpoint,
    Probe,
    PublicRoute,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

SPEC = ServiceSpec(
    name="n8n",
    description="n8n workflow automation, PostgreSQL backend",
    image="docker.n8n.io/n8nio/n8n",
    tag="1.121.2",
    user="1000:1000",
    env={
        "DB_TYPE": "postgresdb",
        "DB_POSTGRESDB_HOST": "postgres",
        "DB_POSTGRESDB_DATABASE": "n8n",
        "DB_POSTGRESDB_USER": "n8n",
        "N8N_HOST": "n8n.{domain}",
        "N8N_PROTOCOL": "https",
        "WEBHOOK_URL": "https://n8n.{domain}/",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_METRICS": "true",
    },
    volumes=[VolumeMount(name="data", path="/home/node/.n8n", backup=BackupPolicy(policy="daily"))],
    # HOME stays on the read-only root; npm and the task runner write caches there.
    tmpfs=["/tmp", "/home/node/.cache"],
    secrets=[
        SecretUse(secret="n8n-db-password", env="DB_POSTGRESDB_PASSWORD_FILE"),
        SecretUse(secret="n8n-encryption-key", env="N8N_ENCRYPTION_KEY_FILE"),
    ],
    networks=["app", "data"],
    health=HealthCheck(
        test=["CMD", "wget", "-qO-", "http://127.0.0.1:5678/healthz"], start_period="60s"
    ),
    memory="1g",
    cpus=1,
    public=PublicRoute(subdomain="n8n", port=5678),
    depends_on=["postgres"],
    metrics=MetricsEndpoint(port=5678),
    probe=Probe(kind="http", port=5678, path="/healthz"),
)
