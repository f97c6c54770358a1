"""Rocket.Chat: team chat, stateless over MongoDB (files in GridFS)."""

from __future__ import annotations

from components.catalog import mongodb
from components.model.context import CatalogContext
from components.model.spec import HealthCheck, MetricsEndpoint, Probe, PublicRoute, ServiceSpec

_HTTP_OK = (
    "require('http').get('http://127.0.0.1:3000/api/info',"
    " r => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"
)

ENTRY_DIR = "/etc/napdms-rocketchat"
"""Where the generated entry wrapper lands (the service's config volume)."""
ENTRY = f"{ENTRY_DIR}/entry.sh"
COMMAND = ["node", "main.js"]
"""The image's own command (in its WORKDIR /app/bundle); setting an entrypoint clears it."""

# Rocket.Chat reads its database URLs only from the environment and has no *_FILE form. The
# wrapper builds them from the password file inside this process (node percent-encodes the
# password; its command line names the file, not the value) and execs Rocket.Chat with them:
# neither the container's config nor any command line holds the password.
_ENCODE = (
    'process.stdout.write(encodeURIComponent(require("fs").readFileSync(process.argv[1], "utf8")'
    '.trim()).replace(/[!\\x27()*]/g, c => "%" + c.charCodeAt(0).toString(16).toUpperCase()))'
)
_SERVER = f"{mongodb.HOST}:{mongodb.PORT}"
_OPLOG_QUERY = f"replicaSet={mongodb.REPLICA_SET}&authSource={mongodb.ROCKETCHAT_DB}"
_ENTRY_SCRIPT = f"""#!/bin/sh
# Rocket.Chat's entry: MONGO_URL and MONGO_OPLOG_URL with the password from its file, exported
# to Rocket.Chat's process only (never in the container's configuration or on a command line).
set -eu
password=$(node -e '{_ENCODE}' {mongodb.ROCKETCHAT_PASSWORD.path})
login="{mongodb.ROCKETCHAT_USER}:$password@{_SERVER}"
export MONGO_URL="mongodb://$login/{mongodb.ROCKETCHAT_DB}?replicaSet={mongodb.REPLICA_SET}"
export MONGO_OPLOG_URL="mongodb://$login/local?{_OPLOG_QUERY}"
unset password login
exec "$@"
"""

SPEC = ServiceSpec(
    name="rocketchat",
    description="Rocket.Chat, MongoDB replica set backend",
    image="registry.rocket.chat/rocketchat/rocket.chat",
    tag="7.12.1",
    user="65533:65533",
    entrypoint=["/bin/sh", ENTRY],
    command=COMMAND,
    env={
        "ROOT_URL": "https://chat.{domain}",
        "PORT": "3000",
        "DEPLOY_METHOD": "docker",
        # Metrics on a port of their own, which the proxy does not route.
        "OVERWRITE_SETTING_Prometheus_Enabled": "true",
        "OVERWRITE_SETTING_Prometheus_Port": "9458",
    },
    # HOME=/tmp in this image: Meteor and the Apps-Engine write there.
    tmpfs=["/tmp"],
    secrets=[mongodb.ROCKETCHAT_PASSWORD],
    config_dir=ENTRY_DIR,
    # chat: MongoDB, which no other application reaches.
    networks=["app", "chat"],
    health=HealthCheck(test=["CMD", "node", "-e", _HTTP_OK], start_period="120s"),
    memory="1536m",
    cpus=1,
    stateless=True,
    public=PublicRoute(subdomain="chat", port=3000),
    depends_on=["mongodb"],
    metrics=MetricsEndpoint(port=9458),
    probe=Probe(kind="http", port=3000, path="/api/info"),
)


def files(context: CatalogContext) -> dict[str, str]:
    """The entry wrapper that builds the database URLs from the password file."""
    return {"entry.sh": _ENTRY_SCRIPT}
