"""Rocket.Chat: team chat, stateless over MongoDB (files in GridFS)."""

from components.model.spec import HealthCheck, PublicRoute, ServiceSpec

_HTTP_OK = (
    "require('http').get('http://127.0.0.1:3000/api/info',"
    " r => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"
)

SPEC = ServiceSpec(
    name="rocketchat",
    description="Rocket.Chat, MongoDB replica set backend",
    image="registry.rocket.chat/rocketchat/rocket.chat",
    tag="7.12.1",
    user="65533:65533",
    env={
        "MONGO_URL": "mongodb://mongodb:27017/rocketchat?replicaSet=rs0",
        "ROOT_URL": "https://chat.{domain}",
        "PORT": "3000",
        "DEPLOY_METHOD": "docker",
    },
    # HOME=/tmp in this image: Meteor and the Apps-Engine write there.
    tmpfs=["/tmp"],
    networks=["app", "data"],
    health=HealthCheck(test=["CMD", "node", "-e", _HTTP_OK], start_period="120s"),
    memory="1536m",
    cpus=1,
    stateless=True,
    public=PublicRoute(subdomain="chat", port=3000),
    depends_on=["mongodb"],
)
