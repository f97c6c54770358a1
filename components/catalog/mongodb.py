"""MongoDB: Rocket.Chat's database, a single-member replica set (Rocket.Chat needs the oplog).

Access control is on (`--auth`, and the replica set's `--keyFile`, which a replica set with
authorisation requires). Two users, both with generated passwords read from files:

- `root` (role `root` on `admin`): created by the image's entrypoint on the first start from
  `MONGO_INITDB_ROOT_PASSWORD_FILE`; the health check (replica-set initiation) and the backup agent
  (`mongodump`) log in as it.
- `rocketchat` (in database `rocketchat`: `readWrite` there, `read` on `local` for the oplog):
  created by `10-rocketchat-user.js`, which the entrypoint runs once on that first start against
  its temporary, access-control-free mongod on 127.0.0.1.

Every password is read from its file by the process that needs it (mongosh's `fs`, the
entrypoint's `file_env`): none is on a command line or in the container's environment. MongoDB
sits on the `chat` network, which only Rocket.Chat and the backup agent join.
"""

from __future__ import annotations

import json

from components.model.context import CatalogContext
from components.model.spec import (
    BackupHook,
    BackupPolicy,
    HealthCheck,
    Probe,
    SecretUse,
    ServiceSpec,
    VolumeMount,
)

HOST = "mongodb"
"""The server's alias on the `chat` network (the service name)."""
PORT = 27017
REPLICA_SET = "rs0"
ROOT_USER = "root"
ROOT_PASSWORD = SecretUse(secret="mongodb-root-password", env="MONGO_INITDB_ROOT_PASSWORD_FILE")
KEY_FILE = SecretUse(secret="mongodb-keyfile")
"""The replica set's internal-authentication key (32 letters and digits: base64 characters, as
mongod wants), 0400 and owned by mongod's uid like every secret file."""
ROCKETCHAT_USER = "rocketchat"
ROCKETCHAT_DB = "rocketchat"
"""Rocket.Chat's database, where its user is defined (its authentication database)."""
ROCKETCHAT_PASSWORD = SecretUse(secret="rocketchat-mongodb-password")

INITDB_DIR = "/docker-entrypoint-initdb.d"


def _js(value: str) -> str:
    """A JavaScript string literal."""
    return json.dumps(value)


def _read_secret(use: SecretUse) -> str:
    """JavaScript reading a secret file inside mongosh (the path, not the value, is in the code)."""
    return f"require('fs').readFileSync({_js(use.path)}, 'utf8').trim()"


# The health check doubles as the one-time replica-set initiation. It logs in as root with the
# password mongosh reads from the file (with users defined, the localhost exception is gone), then
# initiates the set the first time it finds none, and succeeds once this member is the primary.
_PRIMARY_OR_INITIATE = (
    f"db.getSiblingDB('admin').auth({_js(ROOT_USER)}, {_read_secret(ROOT_PASSWORD)}); "
    "try { rs.status() } catch (e) "
    f"{{ rs.initiate({{_id: {_js(REPLICA_SET)}, "
    f"members: [{{_id: 0, host: {_js(f'{HOST}:{PORT}')}}}]}}) }}; "
    "if (!db.hello().isWritablePrimary) { throw new Error('not the primary (yet)') }"
)

# Run once by the image's entrypoint (mongosh, against the temporary mongod of the first start,
# which runs without --auth on 127.0.0.1), after it created the root user.
_ROCKETCHAT_USER = f"""// Rocket.Chat's own login: its database, and the oplog (read on local).
db.getSiblingDB({_js(ROCKETCHAT_DB)}).createUser({{
  user: {_js(ROCKETCHAT_USER)},
  pwd: {_read_secret(ROCKETCHAT_PASSWORD)},
  roles: [{{role: "readWrite", db: {_js(ROCKETCHAT_DB)}}}, {{role: "read", db: "local"}}],
}});
"""

SPEC = ServiceSpec(
    name="mongodb",
    description="MongoDB 8, official image, replica set rs0 for Rocket.Chat, access control on",
    image="docker.io/library/mongo",
    tag="8.0.13",
    user="999:999",
    command=[
        "mongod",
        "--replSet",
        REPLICA_SET,
        "--bind_ip_all",
        "--oplogSize",
        "128",
        "--auth",
        "--keyFile",
        KEY_FILE.path,
    ],
    env={"MONGO_INITDB_ROOT_USERNAME": ROOT_USER},
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
    secrets=[ROOT_PASSWORD, KEY_FILE, ROCKETCHAT_PASSWORD],
    config_dir=INITDB_DIR,
    networks=["chat"],
    health=HealthCheck(
        test=["CMD", "mongosh", "--quiet", "--eval", _PRIMARY_OR_INITIATE], start_period="60s"
    ),
    memory="1g",
    cpus=1,
    backup_hook=BackupHook(
        kind="mongodb", port=PORT, user=ROOT_USER, password_secret=ROOT_PASSWORD.secret
    ),
    probe=Probe(kind="tcp", port=27017),
)


def files(context: CatalogContext) -> dict[str, str]:
    """The first-start script that creates Rocket.Chat's user."""
    return {"10-rocketchat-user.js": _ROCKETCHAT_USER}
