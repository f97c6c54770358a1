"""Backup agent: restic over every daily-backed-up volume, mounted read-only under /source."""

from components.catalog.spec import BackupPolicy, CapAdd, Exemption, HealthCheck, SecretUse, ServiceSpec, VolumeMount

# Runs `restic backup` once a day at $BACKUP_AT (local time of the container, TZ set by the
# platform). The Python orchestrator of the backups issue replaces this loop; the engine,
# mounts, secret and schedule stay.
_SCHEDULE_LOOP = (
    'restic cat config >/dev/null 2>&1 || restic init; '
    'while true; do '
    'if [ "$(date +%H:%M)" = "$BACKUP_AT" ]; then '
    'restic backup --host napdms --tag daily /source && date +%s > /tmp/last-success; sleep 61; '
    'fi; sleep 20; done'
)

SPEC = ServiceSpec(
    name="backup-agent",
    description="restic backup of every volume whose policy is daily",
    image="docker.io/restic/restic",
    tag="0.18.1",
    user="0:0",
    entrypoint=["/bin/sh", "-c"],
    command=[_SCHEDULE_LOOP],
    env={
        "RESTIC_REPOSITORY": "{backup_repository}",
        "BACKUP_AT": "{backup_at}",
        "TZ": "{timezone}",
        "RESTIC_CACHE_DIR": "/cache",
    },
    volumes=[
        VolumeMount(
            name="cache",
            path="/cache",
            backup=BackupPolicy(policy="exclude", reason="restic's index cache, rebuilt from the repository"),
        )
    ],
    tmpfs=["/tmp"],
    secrets=[SecretUse(secret="restic-password", env="RESTIC_PASSWORD_FILE")],
    networks=["edge"],
    cap_add=[CapAdd(name="DAC_READ_SEARCH", reason="read every service's files whatever their owner")],
    exemptions=[
        Exemption(rule="run-as-root", reason="reads all volumes; the only capability is DAC_READ_SEARCH"),
        Exemption(
            rule="dangerous-capability",
            reason="DAC_READ_SEARCH to read every volume whatever its owner; each one is mounted read-only",
        ),
    ],
    health=HealthCheck(test=["CMD-SHELL", "test -r /run/secrets/restic-password && restic version"]),
    memory="1g",
    cpus=1,
    reads_backed_up_volumes=True,
)
