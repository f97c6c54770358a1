"""Redis: cache and session store of NAP-DMS."""

from components.model.spec import (
    BackupHook,
    BackupPolicy,
    HealthCheck,
    Probe,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

SPEC = ServiceSpec(
    name="redis",
    description="Redis 7, official Debian image, password from a config file",
    image="docker.io/library/redis",
    tag="7.4.1-bookworm",
    user="999:999",
    # The password reaches redis-server through an included config file, never argv or env.
    command=[
        "redis-server",
        "/run/secrets/redis-auth.conf",
        "--save",
        "300 10",
        "--appendonly",
        "no",
    ],
    volumes=[VolumeMount(name="data", path="/data", backup=BackupPolicy(policy="daily"))],
    tmpfs=["/tmp"],
    secrets=[
        SecretUse(secret="redis-password"),
        SecretUse(
            secret="redis-password", file="redis-auth.conf", template="requirepass {secret}\n"
        ),
    ],
    networks=["data"],
    health=HealthCheck(
        test=[
            "CMD-SHELL",
            (
                'REDISCLI_AUTH="$(cat /run/secrets/redis-password)"'
                " redis-cli -h 127.0.0.1 ping | grep -q PONG"
            ),
        ]
    ),
    memory="512m",
    cpus=1,
    backup_hook=BackupHook(kind="redis", port=6379, password_secret="redis-password"),
    probe=Probe(kind="tcp", port=6379),
)
