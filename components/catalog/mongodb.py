"""MongoDB: Rocket.Chat's database, a single-member replica set (Rocket.Chat needs the oplog)."""

from components.model.spec import BackupHook, BackupPolicy, HealthCheck, ServiceSpec, VolumeMount

# The health check doubles as the one-time replica-set initiation: it succeeds once the
# member is PRIMARY, and initiates the set the first time it finds none.
_PRIMARY_OR_INITIATE = (
    "try { rs.status().ok } catch (e) "
    "{ rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'mongodb:27017'}]}).ok }"
)

SPEC = ServiceSpec(
    name="mongodb",
    description="MongoDB 8, official image, replica set rs0 for Rocket.Chat",
    image="docker.io/library/mongo",
    tag="8.0.13",
    user="999:999",
    command=["mongod", "--replSet", "rs0", "--bind_ip_all", "--oplogSize", "128"],
    volumes=[
        VolumeMount(name="data", path="/data/db", backup=BackupPolicy(policy="daily")),
        VolumeMount(
            name="configdb",
            path="/data/configdb",
            backup=BackupPolicy(
                policy="exclude", reason="empty for a replica set without config servers"
            ),
        ),
    ],
    tmpfs=["/tmp"],
    networks=["data"],
    health=HealthCheck(
        test=["CMD", "mongosh", "--quiet", "--eval", _PRIMARY_OR_INITIATE], start_period="60s"
    ),
    memory="1g",
    cpus=1,
    # No user: mongod runs without --auth and is reachable only on the internal data network.
    backup_hook=BackupHook(kind="mongodb", port=27017),
)
