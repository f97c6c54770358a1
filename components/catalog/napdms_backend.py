"""NAP-DMS backend: our API. Its image contract: listens on 8000, GET /healthz, uid 10001, wget."""

from components.model.spec import (
    BackupPolicy,
    HealthCheck,
    Probe,
    PublicRoute,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

SPEC = ServiceSpec(
    name="napdms-backend",
    description="NAP-DMS API server (our image)",
    image="ghcr.io/nap-dms/nap-dms-backend",
    tag="1.0.0",
    user="10001:10001",
    env={
        "DATABASE_HOST": "postgres",
        "DATABASE_NAME": "napdms",
        "DATABASE_USER": "napdms",
        "REDIS_HOST": "redis",
        "DOCUMENTS_DIR": "/var/lib/napdms/documents",
        "PUBLIC_URL": "https://dms.{domain}",
    },
    # The documents volume is shared by every replica: the containers stay stateless.
    volumes=[
        VolumeMount(
            name="documents", path="/var/lib/napdms/documents", backup=BackupPolicy(policy="daily")
        )
    ],
    tmpfs=["/tmp"],
    secrets=[
        SecretUse(secret="napdms-db-password", env="DATABASE_PASSWORD_FILE"),
        SecretUse(secret="redis-password", env="REDIS_PASSWORD_FILE"),
        SecretUse(secret="napdms-app-key", env="APP_KEY_FILE"),
    ],
    networks=["app", "data", "monitoring"],
    health=HealthCheck(test=["CMD", "wget", "-qO-", "http://127.0.0.1:8000/healthz"]),
    memory="1g",
    cpus=1,
    stateless=True,
    public=PublicRoute(subdomain="api", port=8000),
    depends_on=["postgres", "redis"],
    probe=Probe(kind="http", port=8000, path="/healthz"),
)
